// Catch2 v2's implementation without a main (CATCH_CONFIG_RUNNER), compiled once for every test
// program: main.cpp is the ordinary programs' main, cuda/main.cpp and dist/main.cpp the GPU and
// MPI tests' own. With g++ 12 this is the slowest translation unit of the tests (~20 s).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "catch_run.hpp"

int pld::test::catch_run(int argc, char** argv) { return Catch::Session().run(argc, argv); }
