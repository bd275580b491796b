// pld-bert's GPU trainer on a real device: cuda_trainer.cuh over pld::cuda::DeviceBackend, in the
// precision the run asked for. Compiled into pld-bert only where CUDA is (PLD_BERT_CUDA).
//
// Data parallel (mpirun -np N pld-bert pretrain --device cuda): one process per GPU. A rank takes
// the GPU of its place on its machine (the launcher's local rank: Open MPI, MPICH, SLURM; the only
// GPU it sees when the launcher gives each rank its own), and its
// gradients are summed over NCCL (PLD_BERT_NCCL, where NCCL and MPI were found), on a side stream
// that waits for each layer's backward; the NCCL id travels over the host communicator.
#include <cstdlib>
#include <memory>
#include <string>

#include "cuda_trainer.cuh"
#include "pld/cuda/error.hpp"
#include "pld/cuda/pre_ln_layer.cuh"
#include "pld/dist/communicator.hpp"
#if defined(PLD_BERT_NCCL)
#include "pld/dist/nccl.hpp"
#endif

namespace bert {

namespace {

// This process's place among the ranks on its machine, from the launcher's environment; -1 when
// no launcher says (one process: the current device).
int local_rank() {
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK", "SLURM_LOCALID"}) {
    const char* s = std::getenv(v);
    if (s && *s) {
      char* end = nullptr;
      const long r = std::strtol(s, &end, 10);
      if (*end == '\0' && r >= 0 && r < (1 << 20)) return static_cast<int>(r);
    }
  }
  return -1;
}

#if defined(PLD_BERT_NCCL)
// An NCCL communicator over all ranks, its id sent from rank 0 through `hosts` (a sum in which
// the other ranks add zeros: the bytes are small integers, exact in double). Owns the ncclComm_t.
class NcclRanks {
 public:
  NcclRanks(pld::dist::Communicator& hosts, cudaStream_t stream) {
    ncclUniqueId id{};
    if (hosts.rank() == 0) pld::dist::detail::nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    double bytes[sizeof id.internal];
    for (std::size_t i = 0; i < sizeof id.internal; ++i)
      bytes[i] = hosts.rank() == 0 ? static_cast<double>(static_cast<unsigned char>(id.internal[i])) : 0.0;
    hosts.sum_now(bytes, sizeof id.internal);
    for (std::size_t i = 0; i < sizeof id.internal; ++i) id.internal[i] = static_cast<char>(static_cast<unsigned char>(bytes[i]));
    pld::dist::detail::nccl_check(ncclCommInitRank(&nccl_, hosts.size(), id, hosts.rank()), "ncclCommInitRank");
    comm_ = std::make_unique<pld::dist::NcclCommunicator>(nccl_, stream);
  }
  ~NcclRanks() {
    comm_.reset();
    ncclCommDestroy(nccl_);
  }
  NcclRanks(const NcclRanks&) = delete;
  NcclRanks& operator=(const NcclRanks&) = delete;
  pld::dist::Communicator& communicator() { return *comm_; }

 private:
  ncclComm_t nccl_ = nullptr;
  std::unique_ptr<pld::dist::NcclCommunicator> comm_;
};
#endif

// The GPU trainer whose data-parallel gradients (device memory) are summed over NCCL.
template <class T>
class DeviceTrainer final : public CudaTrainer<T, pld::cuda::DeviceBackend<T>> {
 public:
  using CudaTrainer<T, pld::cuda::DeviceBackend<T>>::CudaTrainer;

  pld::dist::Communicator& gradient_communicator(pld::dist::Communicator& hosts) override {
    if (hosts.size() == 1) return hosts;
#if defined(PLD_BERT_NCCL)
    if (!nccl_) nccl_ = std::make_unique<NcclRanks>(hosts, this->model().backend.stream());
    return nccl_->communicator();
#else
    pld::detail::throw_error("--device cuda with ", hosts.size(), " ranks sums the gradients over NCCL: this pld-bert was built without NCCL ",
                             "(or without MPI); run one process, or --device cpu");
#endif
  }

 private:
#if defined(PLD_BERT_NCCL)
  std::unique_ptr<NcclRanks> nccl_;  // destroyed before the model and its stream
#endif
};

}  // namespace

std::unique_ptr<Trainer> make_cuda_trainer(const ModelConfig& c, const OptimizerConfig& o, GpuPrecision p) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0)
    pld::detail::throw_error("--device cuda: no usable CUDA device (", e != cudaSuccess ? cudaGetErrorString(e) : "none found",
                             "); use --device cpu");
  // A rank's GPU is its local rank's; a process that sees one GPU (a launcher that gives each
  // rank its own, through CUDA_VISIBLE_DEVICES) takes that one.
  const int local = local_rank();
  if (local >= count && count > 1)
    pld::detail::throw_error("--device cuda: this machine runs local rank ", local, " but this process sees ", count,
                             " GPUs: start one process per GPU");
  if (local >= 0) pld::cuda::check(cudaSetDevice(count == 1 ? 0 : local), "cudaSetDevice");
  int dev = 0;
  pld::cuda::check(cudaGetDevice(&dev), "cudaGetDevice");
  cudaDeviceProp prop{};
  pld::cuda::check(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
  const std::string processor = std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ")";
  if (p == GpuPrecision::bf16 && prop.major < 8)
    pld::detail::throw_error("--precision bf16 needs a GPU of compute capability 8.0 or newer; ", processor, " has ", prop.major, ".",
                             prop.minor, ": use --precision fp16 or fp32");
  switch (p) {
    case GpuPrecision::fp32:
      return std::make_unique<DeviceTrainer<float>>(c, o, processor);
    case GpuPrecision::fp16:
      return std::make_unique<DeviceTrainer<pld::cuda::fp16>>(c, o, processor);
    case GpuPrecision::bf16:
      break;
  }
  return std::make_unique<DeviceTrainer<pld::cuda::bf16>>(c, o, processor);
}

}  // namespace bert
