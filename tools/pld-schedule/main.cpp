// pld-schedule: see schedule_cli.hpp or run with --help.
#include <iostream>
#include <string>
#include <vector>

#include "pld-schedule/schedule_cli.hpp"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  return pld::tools::run_schedule_cli(args, std::cout, std::cerr);
}
