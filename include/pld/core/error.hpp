// pld::Error: the single exception type the library throws. Invalid parameters, shape mismatches,
// malformed state and I/O failures all end here with a message that names the offending value.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace pld {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

// Concatenates its arguments with operator<< and throws them as a pld::Error.
template <class... Parts>
[[noreturn]] void throw_error(Parts&&... parts) {
  std::ostringstream os;
  os.precision(17);
  (os << ... << std::forward<Parts>(parts));
  throw Error(os.str());
}

}  // namespace detail
}  // namespace pld
