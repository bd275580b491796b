// pld::cpu::Precision: the operands' type of the CPU products, on its own so that code which only
// names a precision (a model's configuration, say) need not include the GEMM and its libraries.
#pragma once

#include <string>

#include "pld/core/error.hpp"

namespace pld::cpu {

// The operands' type in a float product: fp32, or bf16 (rounded to nearest even from the fp32
// values) with fp32 accumulation and an fp32 result. `native` picks bf16 where the CPU multiplies
// bf16 in hardware (AMX or AVX512-BF16), fp32 elsewhere.
enum class Precision { fp32, bf16, native };

inline const char* to_string(Precision p) {
  switch (p) {
    case Precision::fp32: return "fp32";
    case Precision::bf16: return "bf16";
    case Precision::native: return "native";
  }
  return "?";
}

inline Precision parse_precision(const std::string& s) {
  if (s == "fp32") return Precision::fp32;
  if (s == "bf16") return Precision::bf16;
  if (s == "native" || s == "auto") return Precision::native;
  pld::detail::throw_error("precision must be fp32, bf16 or auto; got '", s, "'");
}

}  // namespace pld::cpu
