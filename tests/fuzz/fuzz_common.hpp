// Shared by pld's libFuzzer targets (scripts/fuzz.sh builds and runs them). A target feeds the
// input to one reader; the reader may refuse it with pld::Error (that is the contract: one clear
// error), but any other exception, a crash, a leak, undefined behaviour or a hang is a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>

#include "pld/core/error.hpp"

namespace pld_fuzz {

inline std::string text(const std::uint8_t* data, std::size_t size) { return std::string(reinterpret_cast<const char*>(data), size); }

// Runs f; a pld::Error is an accepted refusal, anything else propagates (libFuzzer reports it).
template <class F>
void refuse_or_accept(F&& f) {
  try {
    f();
  } catch (const pld::Error&) {
  }
}

}  // namespace pld_fuzz
