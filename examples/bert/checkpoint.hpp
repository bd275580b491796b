// Checkpoints: one binary file holding the run's compatibility key (model, vocabulary, optimizer
// and PLD configuration as JSON text), the step, the data position, the pld::Controller state,
// every parameter, the optimizer's moments and the elapsed training time.
//
// Layout: "PLDBERT\n" | u32 version | u64 payload bytes | payload | u64 FNV-1a of the payload.
// Version 2 adds one string after the controller state, the trainer's own state (a GPU fp16
// run's loss scale); a checkpoint without one is written as version 1, as before, and both read.
// All integers little-endian as the machine writes them (x86-64, AArch64). Written atomically:
// a temporary file in the same directory, flushed and fsync'ed, then renamed over the target, so
// a crash or a full disk never leaves a half-written checkpoint under the real name.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "model_config.hpp"
#include "pld/core/error.hpp"
#include "pld/hooks/state.hpp"

namespace bert {

inline constexpr char kCheckpointMagic[8] = {'P', 'L', 'D', 'B', 'E', 'R', 'T', '\n'};
inline constexpr std::uint32_t kCheckpointVersion = 2;  // the newest this program reads

struct Checkpoint {
  std::string key;  // compatibility JSON: a checkpoint only resumes the run that wrote it
  std::int64_t step = 0;
  std::uint64_t data_position = 0;
  double elapsed_seconds = 0.0;
  std::string controller_state;
  std::string trainer_state;  // "" or the device's own state (fp16 loss scale: pld::cuda::DynamicLossScale)
  std::vector<std::string> names;
  std::vector<std::vector<float>> values, m, v;
  std::vector<std::int64_t> opt_steps;
};

namespace detail {

class Writer {
 public:
  template <class T>
  void pod(const T& x) {
    const auto* p = reinterpret_cast<const char*>(&x);
    buf_.insert(buf_.end(), p, p + sizeof(T));
  }
  void str(const std::string& s) {
    pod<std::uint64_t>(s.size());
    buf_.insert(buf_.end(), s.begin(), s.end());
  }
  void floats(const float* p, std::size_t n) {
    pod<std::uint64_t>(n);
    const auto* c = reinterpret_cast<const char*>(p);
    buf_.insert(buf_.end(), c, c + n * sizeof(float));
  }
  const std::string& bytes() const { return buf_; }

 private:
  std::string buf_;
};

class Reader {
 public:
  Reader(const char* p, std::size_t n, const std::string& what) : p_(p), n_(n), what_(what) {}
  template <class T>
  T pod() {
    need(sizeof(T));
    T x;
    std::memcpy(&x, p_ + at_, sizeof(T));
    at_ += sizeof(T);
    return x;
  }
  std::string str() {
    const auto n = pod<std::uint64_t>();
    need(n);
    std::string s(p_ + at_, static_cast<std::size_t>(n));
    at_ += static_cast<std::size_t>(n);
    return s;
  }
  std::vector<float> floats() {
    const auto n = pod<std::uint64_t>();
    if (n > (n_ - at_) / sizeof(float)) fail();
    std::vector<float> v(static_cast<std::size_t>(n));
    if (n > 0) std::memcpy(v.data(), p_ + at_, v.size() * sizeof(float));  // an empty vector's data() may be null (found by fuzzing)
    at_ += v.size() * sizeof(float);
    return v;
  }
  bool done() const { return at_ == n_; }

 private:
  void need(std::uint64_t k) {
    if (k > n_ - at_) fail();
  }
  [[noreturn]] void fail() { pld::detail::throw_error("checkpoint ", what_, " is corrupt: a record runs past the end"); }
  const char* p_;
  std::size_t n_, at_ = 0;
  std::string what_;
};

}  // namespace detail

inline void write_file_atomically(const std::string& path, const std::string& bytes) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string tmp = (dir / ("." + target.filename().string() + ".tmp." + std::to_string(::getpid()))).string();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) pld::detail::throw_error("cannot create ", tmp, ": ", std::strerror(errno));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      const std::string err = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      pld::detail::throw_error("cannot write ", tmp, ": ", err, " (the previous checkpoint is untouched)");
    }
    done += static_cast<std::size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    pld::detail::throw_error("cannot flush ", tmp, " (the previous checkpoint is untouched)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    pld::detail::throw_error("cannot rename ", tmp, " to ", path);
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

inline std::string serialize_checkpoint(const Checkpoint& c) {
  detail::Writer w;
  w.str(c.key);
  w.pod(c.step);
  w.pod(c.data_position);
  w.pod(c.elapsed_seconds);
  w.str(c.controller_state);
  const std::uint32_t version = c.trainer_state.empty() ? 1 : 2;
  if (version == 2) w.str(c.trainer_state);
  w.pod<std::uint64_t>(c.names.size());
  for (std::size_t i = 0; i < c.names.size(); ++i) {
    w.str(c.names[i]);
    w.floats(c.values[i].data(), c.values[i].size());
    w.pod(c.opt_steps[i]);
    w.floats(c.m[i].data(), c.m[i].size());
    w.floats(c.v[i].data(), c.v[i].size());
  }
  const std::string& payload = w.bytes();
  detail::Writer file;
  std::string out(kCheckpointMagic, sizeof kCheckpointMagic);
  file.pod(version);
  file.pod<std::uint64_t>(payload.size());
  out += file.bytes();
  out += payload;
  const std::uint64_t sum = pld::detail::fnv1a64(payload);
  out.append(reinterpret_cast<const char*>(&sum), sizeof sum);
  return out;
}

inline Checkpoint parse_checkpoint(const std::string& bytes, const std::string& what) {
  const std::size_t head = sizeof kCheckpointMagic + sizeof(std::uint32_t) + sizeof(std::uint64_t);
  if (bytes.size() < head + sizeof(std::uint64_t) || std::memcmp(bytes.data(), kCheckpointMagic, sizeof kCheckpointMagic) != 0)
    pld::detail::throw_error(what, " is not a pld-bert checkpoint");
  std::uint32_t version = 0;
  std::uint64_t size = 0;
  std::memcpy(&version, bytes.data() + sizeof kCheckpointMagic, sizeof version);
  std::memcpy(&size, bytes.data() + sizeof kCheckpointMagic + sizeof version, sizeof size);
  if (version < 1 || version > kCheckpointVersion)
    pld::detail::throw_error("checkpoint ", what, " has version ", version, "; this program reads versions 1 to ", kCheckpointVersion);
  if (size != bytes.size() - head - sizeof(std::uint64_t))
    pld::detail::throw_error("checkpoint ", what, " is truncated or has trailing bytes (", bytes.size(), " bytes, header says ",
                             size + head + sizeof(std::uint64_t), ")");
  const std::string_view payload(bytes.data() + head, static_cast<std::size_t>(size));
  std::uint64_t sum = 0;
  std::memcpy(&sum, bytes.data() + head + size, sizeof sum);
  if (sum != pld::detail::fnv1a64(payload)) pld::detail::throw_error("checkpoint ", what, " is corrupt: checksum mismatch");
  detail::Reader r(payload.data(), payload.size(), what);
  Checkpoint c;
  c.key = r.str();
  c.step = r.pod<std::int64_t>();
  c.data_position = r.pod<std::uint64_t>();
  c.elapsed_seconds = r.pod<double>();
  c.controller_state = r.str();
  if (version >= 2) {
    c.trainer_state = r.str();
    // One encoding per content: an empty trainer state is written as version 1.
    if (c.trainer_state.empty()) pld::detail::throw_error("checkpoint ", what, " is corrupt: version 2 with an empty trainer state");
  }
  const auto n = r.pod<std::uint64_t>();
  if (n > payload.size()) pld::detail::throw_error("checkpoint ", what, " is corrupt: ", n, " tensors");
  for (std::uint64_t i = 0; i < n; ++i) {
    c.names.push_back(r.str());
    c.values.push_back(r.floats());
    c.opt_steps.push_back(r.pod<std::int64_t>());
    c.m.push_back(r.floats());
    c.v.push_back(r.floats());
  }
  if (!r.done()) pld::detail::throw_error("checkpoint ", what, " is corrupt: unread bytes at the end");
  return c;
}

inline Checkpoint read_checkpoint(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) pld::detail::throw_error("checkpoint ", path, " is a directory, not a checkpoint file");
  std::ifstream in(path, std::ios::binary);
  if (!in) pld::detail::throw_error("cannot read checkpoint ", path, ": ", std::strerror(errno));
  std::string bytes;
  try {
    bytes.assign((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  } catch (const std::exception& e) {
    pld::detail::throw_error("cannot read checkpoint ", path, ": ", e.what());
  }
  if (in.bad()) pld::detail::throw_error("cannot read checkpoint ", path, ": read error");
  return parse_checkpoint(bytes, path);
}

// The model's and optimizer's state, as a checkpoint (key, step etc. filled by the caller).
// Checks that a checkpoint's tensors are, in order, the model's (names and sizes), with an
// optimizer state of the same sizes: one error naming the first that differs.
inline void check_checkpoint_tensors(const Checkpoint& c, const std::vector<std::string>& names, const std::vector<std::size_t>& sizes,
                                     const std::string& what) {
  if (c.names.size() != names.size())
    pld::detail::throw_error("checkpoint ", what, " holds ", c.names.size(), " tensors, the model has ", names.size());
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (c.names[i] != names[i] || c.values[i].size() != sizes[i])
      pld::detail::throw_error("checkpoint ", what, ": tensor ", i, " is ", c.names[i], " (", c.values[i].size(), "), the model expects ",
                               names[i], " (", sizes[i], ")");
    if (c.m[i].size() != sizes[i] || c.v[i].size() != sizes[i])
      pld::detail::throw_error("checkpoint ", what, ": optimizer state of ", c.names[i], " has the wrong size");
  }
  if (c.opt_steps.size() != names.size()) pld::detail::throw_error("checkpoint ", what, ": optimizer step counts for ", c.opt_steps.size(), " tensors");
}

// The CPU model's parameters and bert::Optimizer's state into a checkpoint.
template <class Optimizer>
void capture(std::vector<Param>& params, Optimizer& opt, Checkpoint& c) {
  c.names.clear();
  c.values.clear();
  c.m = opt.first_moments();
  c.v = opt.second_moments();
  c.opt_steps = opt.steps();
  for (const auto& p : params) {
    c.names.push_back(p.name);
    c.values.emplace_back(p.value, p.value + p.size);
  }
}

// Loads parameters (and, when `opt` is given, the optimizer's state) by name and size.
template <class Optimizer>
void restore(const Checkpoint& c, std::vector<Param>& params, Optimizer* opt, const std::string& what) {
  std::vector<std::string> names;
  std::vector<std::size_t> sizes;
  for (const auto& p : params) {
    names.push_back(p.name);
    sizes.push_back(p.size);
  }
  check_checkpoint_tensors(c, names, sizes, what);
  for (std::size_t i = 0; i < params.size(); ++i) std::copy(c.values[i].begin(), c.values[i].end(), params[i].value);
  if (opt) {
    opt->first_moments() = c.m;
    opt->second_moments() = c.v;
    opt->steps() = c.opt_steps;
  }
}

}  // namespace bert
