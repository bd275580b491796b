# A rank killed with SIGKILL mid-run: `mpirun -np 2 pld_dist_mpi_tests "[.rank-killed]"` must end
# within TIMEOUT seconds (no hang) with a non-zero status and a message naming what happened, and
# the checkpoint rank 0 wrote after its last finished step must be intact (step 4 or 5).
#   cmake -DMPIRUN=... -DTEST_BIN=... -DDIR=... -DTIMEOUT=60 -P dist_rank_killed.cmake
file(REMOVE_RECURSE "${DIR}")
file(MAKE_DIRECTORY "${DIR}")
string(TIMESTAMP t0 "%s")
execute_process(
  COMMAND ${CMAKE_COMMAND} -E env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PLD_DIST_CHECKPOINT_DIR=${DIR}
          ${MPIRUN} -np 2 --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -x PLD_DIST_CHECKPOINT_DIR ${TEST_BIN} [.rank-killed]
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT ${TIMEOUT})
string(TIMESTAMP t1 "%s")
math(EXPR took "${t1} - ${t0}")
message("exit: ${rc} after ${took} s\n${out}${err}")
if(rc EQUAL 0)
  message(FATAL_ERROR "the job exited 0 although rank 1 was killed")
endif()
if(rc MATCHES "timeout" OR took GREATER_EQUAL ${TIMEOUT})
  message(FATAL_ERROR "the job hung: still running after ${TIMEOUT} s")
endif()
if(NOT "${out}${err}" MATCHES "(signal 9|Killed|killed|did not complete)")
  message(FATAL_ERROR "no clear message about the dead rank")
endif()
file(READ "${DIR}/checkpoint.txt" ckpt)
if(NOT ckpt MATCHES "^step [45]\n$")
  message(FATAL_ERROR "the last checkpoint is not intact: '${ckpt}'")
endif()
message(STATUS "rank killed: job ended in ${took} s with exit ${rc}; checkpoint intact (${ckpt})")
