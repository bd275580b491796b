// Catch2's session over the command line, for a test program's main: its exit status (the number
// of failed test cases, or a command-line error). Defined in catch_impl.cpp, where Catch2's
// implementation is compiled once (Catch2 v2 declares its Session only inside that part).
#pragma once

namespace pld::test {
int catch_run(int argc, char** argv);
}  // namespace pld::test
