# Sourced by the build scripts: sets ccache_flags to the CMake arguments that send compiles through
# ccache, and makes ccache hash paths relative to this checkout (CCACHE_BASEDIR), so a clone in
# another directory hits the same cache entries. Empty when ccache is not installed.
ccache_flags=()
if command -v ccache >/dev/null 2>&1; then
  ccache_flags=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  CCACHE_BASEDIR="$(pwd -P)"
  export CCACHE_BASEDIR
fi
