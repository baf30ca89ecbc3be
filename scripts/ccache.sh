# Sourced by the build scripts: sets ccache_flags to the CMake arguments that send compiles through
# ccache. The launcher itself carries the settings, so a later `cmake --build build` keeps them:
# paths are hashed relative to this checkout (CCACHE_BASEDIR) and the working directory is left out
# of the hash of debug builds (CCACHE_NOHASHDIR), so a clone in another directory hits the same
# cache entries. Empty when ccache is not installed.
ccache_flags=()
if command -v ccache >/dev/null 2>&1; then
  ccache_launcher="env;CCACHE_BASEDIR=$(pwd -P);CCACHE_NOHASHDIR=1;ccache"
  ccache_flags=("-DCMAKE_CXX_COMPILER_LAUNCHER=$ccache_launcher"
    "-DCMAKE_C_COMPILER_LAUNCHER=$ccache_launcher")
fi
