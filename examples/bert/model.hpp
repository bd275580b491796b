// pld-bert's model on the CPU: model_logic.hpp's BERT over cpu_backend.hpp. The names the
// example has always used (Encoder, MlmHead, BertMlm) are that instance.
#pragma once

#include "cpu_backend.hpp"
#include "model_logic.hpp"

namespace bert {

// Instantiated once, in model.cpp (pld_bert_lib): a translation unit that uses the CPU model
// does not compile it again.
extern template class BasicEncoder<CpuBackend>;
extern template class BasicMlmHead<CpuBackend>;
extern template class BasicBertMlm<CpuBackend>;

// The encoder alone (fine-tuning puts its own head on it), with a backend of its own.
namespace detail {
struct OwnCpuBackend {
  CpuBackend backend;
};
}  // namespace detail
class Encoder : private detail::OwnCpuBackend, public BasicEncoder<CpuBackend> {
 public:
  explicit Encoder(const ModelConfig& c) : detail::OwnCpuBackend{CpuBackend(c)}, BasicEncoder<CpuBackend>(c, backend) {}
};

using MlmHead = BasicMlmHead<CpuBackend>;
using BertMlm = BasicBertMlm<CpuBackend>;

}  // namespace bert
