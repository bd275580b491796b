// GradientReducer against communicators whose memory it must not touch: every value it sends or
// receives goes through Communicator::allocate / copy / start_scaled_sum (what lets it run on
// NcclCommunicator's device memory). Here the "device" is host memory kept PROT_NONE except
// inside the communicator's own calls, so a reducer that read or wrote a staging buffer itself
// would stop with SIGSEGV. The communicator also plays several ranks in one process: its sums
// add the other ranks' known contributions. The MPI tests (tests/dist) run the reducer on real
// ranks; tests/cuda/test_cuda_nccl.cu on NCCL.
#include <catch2/catch.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <vector>

#include "pld/dist/reducer.hpp"

namespace {

// Rank `rank_` of `ranks_` ranks; rank r holds grad values v * (r + 1) where this rank holds v *
// (rank_ + 1) (so the sum over ranks is known), and its buffers are locked pages.
class LockedCommunicator final : public pld::dist::Communicator {
 public:
  LockedCommunicator(int rank, int ranks) : rank_(rank), ranks_(ranks) {}
  ~LockedCommunicator() override {
    for (auto& [p, bytes] : regions_) munmap(p, bytes);
  }
  int rank() const override { return rank_; }
  int size() const override { return ranks_; }
  const char* name() const override { return "locked"; }

  int start_sum(float* data, std::size_t n) override { return start_scaled_sum(data, n, 1.0f); }
  int start_scaled_sum(float* data, std::size_t n, float scale) override {
    REQUIRE(owned(data));
    unlock(data);
    // Every rank r contributes (r + 1) / (rank_ + 1) times this rank's values, each scaled.
    double factor = 0;
    for (int r = 0; r < ranks_; ++r) factor += static_cast<double>(r + 1) / (rank_ + 1);
    for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<float>(scale * factor * data[i]);
    lock(data);
    scales_.push_back(scale);
    ++started_;
    return started_ - 1;
  }
  void wait(int handle) override {
    if (handle < 0 || handle >= started_) pld::detail::throw_error("LockedCommunicator::wait: no request ", handle);
    ++waited_;
  }
  void sum_now(double* data, std::size_t n) override {
    for (std::size_t i = 0; i < n; ++i) data[i] *= ranks_;
  }
  void min_max(std::uint64_t value, std::uint64_t& min, std::uint64_t& max) override { min = max = value; }

  float* allocate(std::size_t n) override {
    if (n == 0) return nullptr;
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    const std::size_t bytes = (n * sizeof(float) + page - 1) / page * page;
    void* p = mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED);
    regions_[p] = bytes;
    ++allocations_;
    return static_cast<float*>(p);
  }
  void deallocate(float* p) noexcept override {
    auto it = regions_.find(p);
    if (it == regions_.end()) return;
    munmap(it->first, it->second);
    regions_.erase(it);
  }
  void copy(float* dst, const float* src, std::size_t n) override {
    float* region_d = region_of(dst);
    float* region_s = region_of(src);
    REQUIRE((region_d != nullptr) != (region_s != nullptr));  // always between a gradient and staging
    if (region_d) unlock(region_d);
    if (region_s) unlock(region_s);
    std::memcpy(dst, src, n * sizeof(float));
    if (region_d) lock(region_d);
    if (region_s) lock(region_s);
    ++copies_;
  }

  int started_ = 0, waited_ = 0, copies_ = 0, allocations_ = 0;
  std::vector<float> scales_;

 private:
  bool owned(const float* p) const { return region_of(p) != nullptr; }
  float* region_of(const float* p) const {
    for (const auto& [base, bytes] : regions_) {
      const auto* b = static_cast<const char*>(base);
      const auto* q = reinterpret_cast<const char*>(p);
      if (q >= b && q < b + bytes) return static_cast<float*>(base);
    }
    return nullptr;
  }
  void unlock(float* p) { REQUIRE(mprotect(region_of(p), regions_.at(region_of(p)), PROT_READ | PROT_WRITE) == 0); }
  void lock(float* p) { REQUIRE(mprotect(region_of(p), regions_.at(region_of(p)), PROT_NONE) == 0); }

  int rank_, ranks_;
  std::map<void*, std::size_t> regions_;
};

pld::LayerPlan plan_of(std::int64_t step, std::vector<std::uint8_t> keep) {
  pld::LayerPlan p;
  p.step = step;
  p.keep = std::move(keep);
  p.scale.assign(p.keep.size(), 1.0);
  return p;
}

}  // namespace

TEST_CASE("GradientReducer moves every value through the communicator's memory and copies", "[dist]") {
  const int ranks = 3, rank = 1;
  LockedCommunicator comm(rank, ranks);
  pld::dist::GradientReducer reducer(comm, 2, {/*check_every=*/1});
  // Layer 0: two tensors; layer 1: one; outside the layers: one.
  std::vector<float> a(5), b(3), c(4), e(2);
  reducer.add(0, a.data(), a.size());
  reducer.add(0, b.data(), b.size());
  reducer.add(1, c.data(), c.size());
  reducer.add(-1, e.data(), e.size());
  CHECK(reducer.bucket_size(0) == 8);
  CHECK(reducer.bucket_size(-1) == 2);

  const auto fill = [](std::vector<float>& v, float base) {
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = base + static_cast<float>(i);
  };
  // Rank r holds (r + 1) / (rank + 1) times these values: the mean over ranks is
  // v * (1 + 2 + 3) / (2 * 3) = v.
  const double mean_factor = (1.0 + 2.0 + 3.0) / ((rank + 1) * ranks);
  for (std::int64_t step = 0; step < 3; ++step) {
    fill(a, 1.0f), fill(b, 10.0f), fill(c, 100.0f), fill(e, -5.0f);
    const bool drop1 = step == 1;  // layer 1 dropped at step 1: not sent, left as it is
    reducer.begin_step(plan_of(step, {1, static_cast<std::uint8_t>(drop1 ? 0 : 1)}));
    reducer.layer_done(1);
    reducer.layer_done(0);
    const pld::dist::StepTraffic t = reducer.finish();
    CHECK(t.buckets == (drop1 ? 2 : 3));
    CHECK(t.layers_reduced == (drop1 ? 1 : 2));
    CHECK(t.bytes == (drop1 ? 10u : 14u) * sizeof(float));
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx((1.0 + i) * mean_factor).epsilon(1e-6));
    for (std::size_t i = 0; i < b.size(); ++i) CHECK(b[i] == Approx((10.0 + i) * mean_factor).epsilon(1e-6));
    for (std::size_t i = 0; i < e.size(); ++i) CHECK(e[i] == Approx((-5.0 + i) * mean_factor).epsilon(1e-6));
    for (std::size_t i = 0; i < c.size(); ++i) CHECK(c[i] == Approx((100.0 + i) * (drop1 ? 1.0 : mean_factor)).epsilon(1e-6));
  }
  // Three buckets staged once each, every value packed and unpacked through copy(), the mean
  // asked of the communicator (scale 1/3), every started sum waited for.
  CHECK(comm.allocations_ == 3);
  CHECK(comm.copies_ == 2 * (4 + 4 + 3));
  CHECK(comm.started_ == 8);
  CHECK(comm.waited_ == 8);
  for (float s : comm.scales_) CHECK(s == 1.0f / 3.0f);
}

TEST_CASE("GradientReducer: sums without averaging, tensors added between steps, misuse refused", "[dist]") {
  LockedCommunicator comm(0, 2);
  pld::dist::GradientReducer reducer(comm, 1, {/*check_every=*/0, /*average=*/false});
  std::vector<float> a(3, 1.0f), b(2, 2.0f);
  reducer.add(0, a.data(), a.size());
  reducer.begin_step(plan_of(0, {1}));
  CHECK_THROWS_WITH(reducer.add(0, b.data(), b.size()), Catch::Contains("during a step"));
  reducer.finish();
  for (float v : a) CHECK(v == 3.0f);  // rank 0's 1 + rank 1's 2: the sum
  reducer.add(0, b.data(), b.size());  // the bucket grows: staged again at the next step
  a.assign(3, 1.0f);
  reducer.begin_step(plan_of(1, {1}));
  reducer.finish();
  for (float v : a) CHECK(v == 3.0f);
  for (float v : b) CHECK(v == 6.0f);
  CHECK(comm.allocations_ == 2);
  for (float s : comm.scales_) CHECK(s == 1.0f);
  CHECK_THROWS_WITH(reducer.add(1, b.data(), b.size()), Catch::Contains("outside -1..0"));
  CHECK_THROWS_WITH(reducer.layer_done(0), Catch::Contains("without begin_step"));
}

TEST_CASE("the host communicators' scaled sum scales before it sends (LocalCommunicator: the identity)", "[dist]") {
  pld::dist::LocalCommunicator local;
  std::vector<float> v{1.0f, -2.0f, 4.0f};
  const int h = local.start_scaled_sum(v.data(), v.size(), 0.5f);
  local.wait(h);
  CHECK(v == std::vector<float>{0.5f, -1.0f, 2.0f});
  float* p = local.allocate(4);
  local.copy(p, v.data(), 3);
  CHECK(p[2] == 2.0f);
  local.deallocate(p);
  CHECK(local.allocate(0) == nullptr);
}
