# Runs at install time (from cmake_install.cmake; see KronopInstall.cmake): writes one
# configured file with the paths of this install's prefix and installs it.

set(_prefix "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "(.)/+$" "\\1" _prefix "${_prefix}")

function(_kronop_full out rel)
  if(IS_ABSOLUTE "${rel}")
    set(${out} "${rel}" PARENT_SCOPE)
  elseif(_prefix STREQUAL "/")
    set(${out} "/${rel}" PARENT_SCOPE)
  else()
    set(${out} "${_prefix}/${rel}" PARENT_SCOPE)
  endif()
endfunction()

_kronop_full(KRONOP_FULL_SBINDIR "${_kronop_rel_sbindir}")
_kronop_full(KRONOP_FULL_LIBDIR "${_kronop_rel_libdir}")
_kronop_full(KRONOP_FULL_INCLUDEDIR "${_kronop_rel_includedir}")
# GNUInstallDirs' rule for the sysconfdir: /etc for the prefixes / and /usr, /etc/opt/X for
# /opt/X, PREFIX/etc otherwise.
if(IS_ABSOLUTE "${_kronop_rel_sysconfdir}")
  set(KRONOP_FULL_SYSCONFDIR "${_kronop_rel_sysconfdir}")
elseif(_prefix MATCHES "^/(usr)?$")
  set(KRONOP_FULL_SYSCONFDIR "/${_kronop_rel_sysconfdir}")
elseif(_prefix MATCHES "^/opt/(.*)")
  set(KRONOP_FULL_SYSCONFDIR "/${_kronop_rel_sysconfdir}/opt/${CMAKE_MATCH_1}")
else()
  _kronop_full(KRONOP_FULL_SYSCONFDIR "${_kronop_rel_sysconfdir}")
endif()
set(KRONOP_PREFIX "${_prefix}")

file(READ "${_kronop_template}" _text)
while(_kronop_replace)
  list(POP_FRONT _kronop_replace _from _to)
  string(CONFIGURE "${_to}" _to @ONLY)
  string(REPLACE "${_from}" "${_to}" _text "${_text}")
endwhile()
string(CONFIGURE "${_text}" _text @ONLY)
file(WRITE "${_kronop_work}/${_kronop_name}" "${_text}")

if(_kronop_sysconf)
  set(_dir "${KRONOP_FULL_SYSCONFDIR}/${_kronop_destination}")
else()
  _kronop_full(_dir "${_kronop_destination}")
endif()
file(INSTALL DESTINATION "${_dir}" TYPE FILE FILES "${_kronop_work}/${_kronop_name}")
