# Runs PROGRAM (with ARGS, through EMULATOR if set) and fails unless it exits
# 0 and its whole standard output matches the regular expression EXPECT.
# Used by the examples' tests.
separate_arguments(args UNIX_COMMAND "${ARGS}")
execute_process(COMMAND ${EMULATOR} ${PROGRAM} ${args}
  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc TIMEOUT 120)
# A Windows program's stdout is in text mode: its lines end in \r\n.
string(REPLACE "\r\n" "\n" out "${out}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} exited with ${rc}\nstdout:\n${out}\nstderr:\n${err}")
endif()
if(NOT out MATCHES "${EXPECT}")
  message(FATAL_ERROR "output of ${PROGRAM} does not match\n  ${EXPECT}\nstdout:\n${out}\nstderr:\n${err}")
endif()
message(STATUS "output matches:\n${out}")
