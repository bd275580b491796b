// The pld-bert checkpoint reader (examples/bert/checkpoint.hpp) on arbitrary bytes. The first
// input byte picks the mode: odd, the input is the whole file (magic, header, checksum: mostly
// refused early); even, the rest is the payload and the target frames it with a valid header
// (version 1 or 2, by the byte's second bit) and checksum, so the fuzzer reaches the record
// parser behind the checksum. An accepted checkpoint must serialize back to the same bytes.
#include "checkpoint.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string bytes = pld_fuzz::text(data + 1, size - 1);
  if ((data[0] & 1) == 0) {
    const std::string payload = bytes;
    const std::uint32_t version = (data[0] & 2) != 0 ? 2 : 1;
    const std::uint64_t n = payload.size(), sum = pld::detail::fnv1a64(payload);
    bytes.assign(bert::kCheckpointMagic, sizeof bert::kCheckpointMagic);
    bytes.append(reinterpret_cast<const char*>(&version), sizeof version);
    bytes.append(reinterpret_cast<const char*>(&n), sizeof n);
    bytes += payload;
    bytes.append(reinterpret_cast<const char*>(&sum), sizeof sum);
  }
  pld_fuzz::refuse_or_accept([&] {
    const bert::Checkpoint c = bert::parse_checkpoint(bytes, "fuzz input");
    if (bert::serialize_checkpoint(c) != bytes) __builtin_trap();  // a round trip must be exact
  });
  return 0;
}
