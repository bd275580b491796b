// Shared by the pld-bert tests: the committed Brown slice and fresh scratch directories.
#pragma once

#include <filesystem>
#include <string>

#include <unistd.h>

#ifndef PLD_TEST_DATA_DIR
#error "PLD_TEST_DATA_DIR must name tests/data"
#endif

namespace bert_test {

inline const std::string kSlice = std::string(PLD_TEST_DATA_DIR) + "/brown-slice";

// An empty directory path under the system's temporary directory (removed if it existed), private
// to this process: CTest runs test cases of one binary in parallel processes, which must not
// share (and delete) each other's directories.
inline std::string fresh_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("pld-bert-tests-" + std::to_string(::getpid())) / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir.parent_path());
  return dir.string();
}

}  // namespace bert_test
