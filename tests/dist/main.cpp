// The MPI tests' main: MPI is initialised around the Catch2 session, and only rank 0 reports
// (every rank runs every test; a failing check on any rank fails that rank's exit status, which
// mpirun passes on).
#include <cstdio>

#include "../catch_run.hpp"
#include "pld/dist/mpi.hpp"

int main(int argc, char** argv) {
  pld::dist::MpiSession mpi(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const int failed = pld::test::catch_run(argc, argv);  // or, the same on every rank, a command-line error
  int any = failed, worst = 0;
  MPI_Allreduce(&any, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0 && worst != failed) std::fprintf(stderr, "pld_dist_mpi_tests: another rank failed %d test cases\n", worst);
  return worst > 0 ? 1 : 0;
}
