// The CPU model's one instantiation (model.hpp declares it extern).
#include "model.hpp"

namespace bert {

template class BasicEncoder<CpuBackend>;
template class BasicMlmHead<CpuBackend>;
template class BasicBertMlm<CpuBackend>;

}  // namespace bert
