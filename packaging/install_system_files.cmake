# Install-time part of packaging/CMakeLists.txt: the configuration file and the systemd unit, with
# the paths of the prefix being installed to. HERALD_PACKAGING_DIR and HERALD_PACKAGING_BINARY_DIR
# are set by the install rule before this script.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(herald_etc "/etc")
  set(herald_var "/var")
else()
  set(herald_etc "${CMAKE_INSTALL_PREFIX}/etc")
  set(herald_var "${CMAKE_INSTALL_PREFIX}/var")
endif()
set(HERALD_BINARY "${CMAKE_INSTALL_PREFIX}/bin/herald")
set(HERALD_CONFIG_DIR "${herald_etc}/herald")
set(HERALD_STATE_DIR "${herald_var}/lib/herald")
set(HERALD_DOC_DIR "${CMAKE_INSTALL_PREFIX}/share/doc/herald")

configure_file("${HERALD_PACKAGING_DIR}/herald.service.in"
               "${HERALD_PACKAGING_BINARY_DIR}/herald.service" @ONLY)
configure_file("${HERALD_PACKAGING_DIR}/herald.toml.in"
               "${HERALD_PACKAGING_BINARY_DIR}/herald.toml" @ONLY)
file(INSTALL "${HERALD_PACKAGING_BINARY_DIR}/herald.service"
     DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
file(INSTALL "${HERALD_PACKAGING_BINARY_DIR}/herald.toml" DESTINATION "${HERALD_DOC_DIR}"
     RENAME herald.toml.example)

# An existing configuration is the operator's: never overwritten (the example is in the doc dir).
if(EXISTS "$ENV{DESTDIR}${HERALD_CONFIG_DIR}/herald.toml")
  message(STATUS "Keeping: $ENV{DESTDIR}${HERALD_CONFIG_DIR}/herald.toml")
else()
  file(INSTALL "${HERALD_PACKAGING_BINARY_DIR}/herald.toml" DESTINATION "${HERALD_CONFIG_DIR}"
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)
endif()
