// The controller's state inside LibTorch's serialization: beside a model in a
// torch::serialize::OutputArchive, or a whole checkpoint (model, optimizer, controller, and the
// loop's own counters) in one file written atomically. Everything read back is checked: a missing
// entry, a file that is not an archive, and a controller state of another schedule or gate or
// edited by hand are each a pld::Error that says which.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include <torch/torch.h>

#include "pld/core/error.hpp"
#include "pld/hooks/controller.hpp"

namespace pld::libtorch {

inline constexpr const char* kControllerKey = "pld_controller";

inline void save_controller(torch::serialize::OutputArchive& archive, const Controller& controller,
                            const std::string& key = kControllerKey) {
  archive.write(key, c10::IValue(controller.save_state()));
}

// Restores `controller` (constructed with the same schedule and gate configuration) from `key`.
inline void restore_controller(torch::serialize::InputArchive& archive, Controller& controller,
                               const std::string& key = kControllerKey) {
  c10::IValue v;
  bool found = false;
  try {
    found = archive.try_read(key, v);
  } catch (const c10::Error& e) {
    detail::throw_error("archive entry '", key, "' could not be read: ", e.what_without_backtrace());
  }
  if (!found) detail::throw_error("archive has no entry '", key, "' (saved without pld::libtorch::save_controller?)");
  if (!v.isString()) detail::throw_error("archive entry '", key, "' is not a pld controller state (", v.tagKind(), ")");
  controller.restore_state(v.toStringRef());
}

namespace detail {
using pld::detail::throw_error;
// Module::load() replaces each parameter with the stored tensor whatever its shape (LibTorch 1.13:
// a hidden-32 checkpoint loads into a hidden-64 model and fails later, far from the cause), so the
// structure is compared first: every parameter and buffer, recursively, same name, shape and type.
inline void check_module_archive(const torch::nn::Module& module, torch::serialize::InputArchive& archive, const std::string& where) {
  auto check = [&](const std::string& name, const at::Tensor& want, bool is_buffer) {
    at::Tensor got;
    if (!archive.try_read(name, got, is_buffer))
      pld::detail::throw_error("the checkpoint's model has no ", is_buffer ? "buffer " : "parameter ", where, name);
    if (got.sizes() != want.sizes() || got.scalar_type() != want.scalar_type())
      pld::detail::throw_error("the checkpoint's ", where, name, " is ", got.sizes(), " ", got.scalar_type(), ", the model's ", want.sizes(), " ",
                               want.scalar_type(), " (another model configuration?)");
  };
  for (const auto& p : module.named_parameters(/*recurse=*/false)) check(p.key(), p.value(), false);
  for (const auto& b : module.named_buffers(/*recurse=*/false)) check(b.key(), b.value(), true);
  for (const auto& c : module.named_children()) {
    torch::serialize::InputArchive child;
    if (!archive.try_read(c.key(), child)) pld::detail::throw_error("the checkpoint's model has no module ", where, c.key());
    check_module_archive(*c.value(), child, where + c.key() + ".");
  }
}
}  // namespace detail

// A training checkpoint in one file: the model's parameters and buffers, the optimizer's state,
// the controller's state and named integer counters of the loop (data position, ...). Written to
// `path`.tmp and renamed over `path`, so a crash while saving leaves the previous checkpoint.
struct CheckpointCounters {
  std::map<std::string, std::int64_t> values;
};

inline void save_checkpoint(const std::string& path, const torch::nn::Module& model, const torch::optim::Optimizer& optimizer,
                            const Controller& controller, const CheckpointCounters& counters = {}) {
  torch::serialize::OutputArchive root, m, o, c;
  model.save(m);
  optimizer.save(o);
  for (const auto& [name, value] : counters.values) c.write(name, c10::IValue(value));
  root.write("pld_format", c10::IValue(std::int64_t{1}));
  root.write("model", m);
  root.write("optimizer", o);
  root.write("counters", c);
  save_controller(root, controller);
  const std::string tmp = path + ".tmp";
  try {
    root.save_to(tmp);
  } catch (const c10::Error& e) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    detail::throw_error("cannot write checkpoint ", tmp, ": ", e.what_without_backtrace());
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) detail::throw_error("cannot rename ", tmp, " to ", path, ": ", ec.message());
}

// Loads a checkpoint of save_checkpoint into a model and optimizer of the same structure and a
// controller of the same configuration; `counters` gets the names it asks for (each must exist).
// The file, the counters, the controller's state (checksum, schedule, gate) and the model's
// structure (every parameter and buffer: name, shape, type) are checked before anything changes;
// then LibTorch loads the model and the optimizer (whose state it checks itself, possibly after
// loading part of it: do not train on after an error), and the controller last.
inline void load_checkpoint(const std::string& path, torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                            Controller& controller, CheckpointCounters* counters = nullptr) {
  if (!std::filesystem::is_regular_file(path)) detail::throw_error("checkpoint ", path, " does not exist or is not a file");
  torch::serialize::InputArchive root, m, o, c;
  try {
    root.load_from(path);
    c10::IValue format;
    if (!root.try_read("pld_format", format) || !format.isInt() || format.toInt() != 1)
      detail::throw_error("checkpoint ", path, " is not a pld LibTorch checkpoint of format 1");
    root.read("model", m);
    root.read("optimizer", o);
    root.read("counters", c);
    CheckpointCounters read;
    if (counters)
      for (const auto& [name, value] : counters->values) {
        c10::IValue v;
        if (!c.try_read(name, v) || !v.isInt()) detail::throw_error("checkpoint ", path, " has no counter '", name, "'");
        read.values[name] = v.toInt();
      }
    Controller trial = controller;  // restore_state checks the state against this configuration
    restore_controller(root, trial);
    detail::check_module_archive(model, m, "");
    model.load(m);
    optimizer.load(o);
    restore_controller(root, controller);
    if (counters) *counters = read;
  } catch (const c10::Error& e) {
    detail::throw_error("cannot read checkpoint ", path, ": ", e.what_without_backtrace());
  }
}

}  // namespace pld::libtorch
