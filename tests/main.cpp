// The ordinary test programs' main (Catch2's implementation is catch_impl.cpp).
#include "catch_run.hpp"

int main(int argc, char** argv) { return pld::test::catch_run(argc, argv); }
