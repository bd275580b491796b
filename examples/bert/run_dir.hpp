// A run's output directory and its life: which files make a directory "another run's" (so a new
// run never overwrites one), leftovers of a killed write, and SIGTERM / SIGINT turned into a
// checkpoint and a clean exit (preemption on a cluster) instead of lost work.
#pragma once

#include <atomic>
#include <csignal>
#include <filesystem>
#include <ostream>
#include <streambuf>
#include <string>
#include <vector>

#include <sys/types.h>
#include <unistd.h>

#include "pld/core/error.hpp"

namespace bert {

// The files a pld-bert run (pretraining or fine-tuning) leaves in its --out directory.
inline const std::vector<std::string>& run_files() {
  static const std::vector<std::string> f = {"checkpoint.bin", "metrics.jsonl", "summary.json"};
  return f;
}

// The run files present in `dir`, as "a, b" ("" when none).
inline std::string present_run_files(const std::string& dir) {
  std::string found;
  std::error_code ec;
  for (const auto& f : run_files())
    if (std::filesystem::exists(std::filesystem::path(dir) / f, ec)) found += (found.empty() ? "" : ", ") + f;
  return found;
}

// Whether a and b name the same existing file.
inline bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  return std::filesystem::equivalent(a, b, ec) && !ec;
}

// Removes "<dir>/.<name>.tmp.<pid>" files that write_file_atomically left when its process was
// killed mid-write (the real files are untouched by such a kill); temp files of live processes stay.
inline void remove_stale_temp_files(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    const auto at = n.rfind(".tmp.");
    if (n.empty() || n[0] != '.' || at == std::string::npos) continue;
    const std::string pid_text = n.substr(at + 5);
    if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) continue;
    const long pid = std::stol(pid_text);
    if (pid == static_cast<long>(::getpid()) || (::kill(static_cast<pid_t>(pid), 0) == 0)) continue;
    fs::remove(e.path(), ec);
  }
}

// SIGTERM and SIGINT set a flag that the training loop reads after each step; the loop then
// checkpoints and returns 128 + the signal's number. Installed for one run by StopOnSignals'
// lifetime (the previous handlers come back after it).
inline std::atomic<int>& stop_signal() {
  static std::atomic<int> s{0};
  return s;
}

class StopOnSignals {
 public:
  StopOnSignals() {
    stop_signal() = 0;
    struct sigaction sa {};
    sa.sa_handler = [](int sig) { stop_signal() = sig; };
    sa.sa_flags = SA_RESTART;  // a write or fsync the signal interrupts resumes rather than failing with EINTR
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, &old_term_);
    sigaction(SIGINT, &sa, &old_int_);
  }
  ~StopOnSignals() {
    sigaction(SIGTERM, &old_term_, nullptr);
    sigaction(SIGINT, &old_int_, nullptr);
  }
  StopOnSignals(const StopOnSignals&) = delete;
  StopOnSignals& operator=(const StopOnSignals&) = delete;
  // The signal that asked to stop, or 0.
  static int requested() { return stop_signal().load(); }

 private:
  struct sigaction old_term_ {}, old_int_ {};
};

// An ostream that discards everything: the log of ranks other than 0.
class NullStream : public std::ostream {
 public:
  NullStream() : std::ostream(&buf_) {}

 private:
  struct Discard : std::streambuf {
    int overflow(int c) override { return c; }
  } buf_;
};

inline const char* signal_name(int sig) { return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "a signal"; }

}  // namespace bert
