# Installed files that name installation paths (the systemd unit, the pkg-config file) are
# written at install time, from the prefix of that install: `cmake --install build --prefix
# DIR` and the Debian package (cpack, prefix /usr) get their own paths whatever prefix the
# build was configured with.

set(KRONOP_INSTALL_PATHS_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/kronop_install_paths.cmake)

# kronop_install_configured(TEMPLATE <file> DESTINATION <dir> [RENAME <name>]
#                           [SYSCONF] [REPLACE <from> <to>...])
# Installs TEMPLATE into DESTINATION, relative to the install-time prefix or, with SYSCONF,
# to the install-time sysconfdir (/etc for the prefix /usr). In the copy, @KRONOP_PREFIX@,
# @KRONOP_FULL_SBINDIR@, @KRONOP_FULL_LIBDIR@, @KRONOP_FULL_INCLUDEDIR@ and
# @KRONOP_FULL_SYSCONFDIR@ become those paths, and each REPLACE pair's <from> becomes <to>,
# where <to> may name the same @...@ paths.
function(kronop_install_configured)
  cmake_parse_arguments(PARSE_ARGV 0 arg "SYSCONF" "TEMPLATE;DESTINATION;RENAME" "REPLACE")
  get_filename_component(template ${arg_TEMPLATE} ABSOLUTE)
  if(NOT arg_RENAME)
    get_filename_component(arg_RENAME ${template} NAME)
  endif()
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${template})
  install(CODE "
    set(_kronop_template [[${template}]])
    set(_kronop_destination [[${arg_DESTINATION}]])
    set(_kronop_name [[${arg_RENAME}]])
    set(_kronop_sysconf [[${arg_SYSCONF}]])
    set(_kronop_replace [[${arg_REPLACE}]])
    set(_kronop_work [[${CMAKE_CURRENT_BINARY_DIR}/install-time]])
    set(_kronop_rel_sbindir [[${CMAKE_INSTALL_SBINDIR}]])
    set(_kronop_rel_libdir [[${CMAKE_INSTALL_LIBDIR}]])
    set(_kronop_rel_includedir [[${CMAKE_INSTALL_INCLUDEDIR}]])
    set(_kronop_rel_sysconfdir [[${CMAKE_INSTALL_SYSCONFDIR}]])
    include([[${KRONOP_INSTALL_PATHS_SCRIPT}]])")
endfunction()
