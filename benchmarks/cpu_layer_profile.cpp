// Where a CPU layer step's time goes, product by product and pass by pass.
//
// The layer is pld::cpu::SharedPreLnLayer<T> (the one layer logic, what pld-bert and
// pld::cpu::PreLnLayer run) on a backend that derives from pld::cpu::LayerBackend<T> and times
// each of its calls: every matrix product (named by its role in the layer) and every element-wise
// pass. The CPU backend is synchronous, so a call's wall time is its cost. Beside them, in the same
// run: the whole step timed from outside (the difference is the layer logic's own work), and the
// ceiling, pld::cpu::Gemm's product of the layer's largest shape (B*T, H) x (H, 4H) with operands
// already in the precision, so each product reads as a share of what the machine's GEMM does.
//
//   cpu_layer_profile [--sizes mini,small,base] [--modes fp32,bf16,bf16-storage] [--steps N]
//                     [--batch B] [--seq T] [--dropout P] [--threads N]
//
// Modes as bench_cpu_layer's shared layer: fp32 (float storage and products), bf16 (float storage,
// bf16 products: every product converts its operands), bf16-storage (what pld-bert runs). Prints
// one markdown table per case (size, mode): rows sorted by time, with calls per step, ms per step,
// share of the step and, for products, GFLOP/s and the share of the ceiling. Timings are medians
// over --steps forward+backward steps after two warm-up steps. scripts/bench-cpu-layer.sh runs it
// after the benchmark. Not a test: nothing here asserts; bad options exit 2 with one line.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "pld/cpu.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;

// Per name: the seconds of each timed step (one entry per step), calls, FLOPs per step.
struct Stat {
  std::vector<double> seconds;  // per step
  std::int64_t calls = 0;       // over all timed steps
  double flops = 0;             // over all timed steps
  bool product = false;
};
std::map<std::string, Stat>& stats() {
  static std::map<std::string, Stat> s;
  return s;
}
bool g_recording = false;
std::size_t g_step = 0;  // index of the timed step

void record(const std::string& name, double seconds, double flops, bool product) {
  if (!g_recording) return;
  Stat& s = stats()[name];
  if (s.seconds.size() <= g_step) s.seconds.resize(g_step + 1, 0.0);
  s.seconds[g_step] += seconds;
  ++s.calls;
  s.flops += flops;
  s.product = product;
}

struct Timed {
  const char* name;
  Clock::time_point t0 = Clock::now();
  explicit Timed(const char* n) : name(n) {}
  ~Timed() { record(name, std::chrono::duration<double>(Clock::now() - t0).count(), 0.0, false); }
};

// The layer makes its 18 products of a shape in this order (pld::BasicPreLnLayer::Plans, braced
// initialisation in declaration order, then the three backward attention products the CPU's
// heads-in-place layout adds).
constexpr int kProducts = 18;
constexpr const char* kProductNames[kProducts] = {
    "qkv projection", "out projection", "ffn1 (H -> F)", "ffn2 (F -> H)", "attn scores Q K^T",
    "attn context P V", "attn dV = P^T dC", "dW qkv", "dW out", "dW ffn1",
    "dW ffn2", "dX qkv", "dX out", "dX ffn1", "dX ffn2", "attn dP = dC V^T", "attn dQ = dS K", "attn dK = dS^T Q"};
int g_plans_made = 0;

template <class U>
class TimedPlan : public pld::cpu::GemmPlan<U> {
 public:
  TimedPlan(pld::cpu::Gemm& g, const pld::MatMul& mm) : pld::cpu::GemmPlan<U>(g, mm), name_(kProductNames[g_plans_made++ % kProducts]) {
    std::ostringstream os;
    os << name_ << " " << mm.m << "x" << mm.n << "x" << mm.k;
    if (mm.batch * mm.batch2 > 1) os << " x" << mm.batch * mm.batch2;
    name_ = os.str();
  }
  template <class... Args>
  void run(pld::cpu::Gemm& g, Args&&... args) {
    const auto t0 = Clock::now();
    pld::cpu::GemmPlan<U>::run(g, std::forward<Args>(args)...);
    record(name_, std::chrono::duration<double>(Clock::now() - t0).count(), this->shape().flops(), true);
  }

 private:
  std::string name_;
};

#define PLD_TIMED_PASS(fn)                           \
  template <class... Args>                           \
  static void fn(Args&&... args) {                   \
    Timed t(#fn);                                    \
    Base::fn(std::forward<Args>(args)...);           \
  }

template <class T>
struct TimedBackend : pld::cpu::LayerBackend<T> {
  using Base = pld::cpu::LayerBackend<T>;
  template <class U>
  using Plan = TimedPlan<U>;
  PLD_TIMED_PASS(copy)
  PLD_TIMED_PASS(gather_rows)
  PLD_TIMED_PASS(gather_valid)
  PLD_TIMED_PASS(scatter_rows)
  PLD_TIMED_PASS(split_heads)
  PLD_TIMED_PASS(merge_heads)
  PLD_TIMED_PASS(layer_norm_forward)
  PLD_TIMED_PASS(layer_norm_backward)
  PLD_TIMED_PASS(residual_layer_norm)
  PLD_TIMED_PASS(residual_dropout)
  PLD_TIMED_PASS(gelu_forward)
  PLD_TIMED_PASS(gelu_backward)
  PLD_TIMED_PASS(gelu_forward_keep)
  PLD_TIMED_PASS(gelu_backward_given)
  PLD_TIMED_PASS(softmax_forward)
  PLD_TIMED_PASS(softmax_backward)
  PLD_TIMED_PASS(dropout_probs)
  PLD_TIMED_PASS(column_sums)
};
#undef PLD_TIMED_PASS

struct Size {
  const char* name;
  int hidden, heads;
};
constexpr Size kSizes[] = {{"mini", 256, 4}, {"small", 512, 8}, {"base", 768, 12}};

struct Options {
  std::vector<int> sizes{0, 1, 2};
  std::vector<std::string> modes{"fp32", "bf16", "bf16-storage"};
  int steps = 10, batch = 16, seq = 128, threads = 0;
  double dropout = 0.1;
};

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "cpu_layer_profile: %s (see the comment at the top of benchmarks/cpu_layer_profile.cpp)\n", msg.c_str());
  std::exit(2);
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  if (out.empty()) usage_error("an empty list");
  return out;
}

int parse_int(const std::string& flag, const std::string& v, int lo, int hi) {
  char* end = nullptr;
  const long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || x < lo || x > hi)
    usage_error(flag + " wants an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got '" + v + "'");
  return static_cast<int>(x);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf("usage: cpu_layer_profile [--sizes mini,small,base] [--modes fp32,bf16,bf16-storage] [--steps N] [--batch B] [--seq T] "
                  "[--dropout P] [--threads N]\n");
      std::exit(0);
    }
    if (i + 1 >= argc) usage_error(a + " needs a value");
    const std::string v = argv[++i];
    if (a == "--sizes") {
      o.sizes.clear();
      for (const auto& s : split(v)) {
        int k = -1;
        for (int j = 0; j < 3; ++j)
          if (s == kSizes[j].name) k = j;
        if (k < 0) usage_error("unknown size '" + s + "' (mini, small, base)");
        o.sizes.push_back(k);
      }
    } else if (a == "--modes") {
      o.modes = split(v);
      for (const auto& m : o.modes)
        if (m != "fp32" && m != "bf16" && m != "bf16-storage") usage_error("unknown mode '" + m + "' (fp32, bf16, bf16-storage)");
    } else if (a == "--steps") {
      o.steps = parse_int(a, v, 1, 100000);
    } else if (a == "--batch") {
      o.batch = parse_int(a, v, 1, 4096);
    } else if (a == "--seq") {
      o.seq = parse_int(a, v, 1, 4096);
    } else if (a == "--threads") {
      o.threads = parse_int(a, v, 0, 4096);
    } else if (a == "--dropout") {
      char* end = nullptr;
      o.dropout = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(o.dropout >= 0.0 && o.dropout < 1.0)) usage_error("--dropout wants a value in [0, 1), got '" + v + "'");
    } else {
      usage_error("unknown option '" + a + "'");
    }
  }
  return o;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// GFLOP/s of the layer's largest product, (B*T, H) x (H, 4H), operands in the precision, fp32
// out (bench_cpu_layer's BM_GemmCeiling through pld::cpu::Gemm); the best of `reps` after a warm-up.
double ceiling_gflops(int M, int K, bool bf16, int reps) {
  const int N = 4 * K;
  const auto s = pld::cpu::GemmShape::plain(M, N, K, false, true);
  std::vector<float> c(static_cast<std::size_t>(M) * N);
  double best = 1e30;
  if (bf16) {
    pld::cpu::Gemm g(pld::cpu::Precision::bf16);
    std::vector<pld::cpu::bf16> a(static_cast<std::size_t>(M) * K, pld::cpu::bf16(0.5f)), b(static_cast<std::size_t>(N) * K, pld::cpu::bf16(0.25f));
    for (int r = 0; r <= reps; ++r) {
      const auto t0 = Clock::now();
      g.run_bf16(s, a.data(), b.data(), c.data(), true);
      if (r) best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
    }
  } else {
    pld::cpu::Gemm g(pld::cpu::Precision::fp32);
    std::vector<float> a(static_cast<std::size_t>(M) * K, 0.5f), b(static_cast<std::size_t>(N) * K, 0.25f);
    for (int r = 0; r <= reps; ++r) {
      const auto t0 = Clock::now();
      g.run<float>(s, a.data(), b.data(), c.data());
      if (r) best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
    }
  }
  return s.flops() / best * 1e-9;
}

template <class T>
void profile(const Options& o, int size, const std::string& mode) {
  pld::cpu::LayerConfig cfg;
  cfg.hidden = kSizes[size].hidden;
  cfg.heads = kSizes[size].heads;
  cfg.attention_dropout = cfg.hidden_dropout = static_cast<float>(o.dropout);
  const bool bf16_products = mode != "fp32";
  const pld::cpu::Precision precision = bf16_products ? pld::cpu::Precision::bf16 : pld::cpu::Precision::fp32;
  const int M = o.batch * o.seq, H = cfg.hidden;
  const double ceiling = ceiling_gflops(M, H, bf16_products, 20);

  stats().clear();
  g_plans_made = 0;
  pld::BasicPreLnLayer<T, TimedBackend<T>> layer(cfg, precision);
  layer.params().init_normal(1);
  const std::size_t n = static_cast<std::size_t>(M) * H;
  std::vector<T> x(n), y(n), dy(n), dx(n);
  for (std::size_t i = 0; i < n; ++i) {
    x[i] = T(std::sin(0.01f * static_cast<float>(i)));
    dy[i] = T(1e-3f * std::cos(0.013f * static_cast<float>(i)));
  }
  pld::LayerStep step;
  step.seed = 1;
  step.scale = 1.25;
  const auto sizes = layer.workspace_sizes(o.batch, o.seq, step);
  pld::cpu::AlignedBuffer saved, scratch;
  saved.resize(sizes.saved);
  scratch.resize(sizes.scratch);
  const pld::Workspace ws{saved.data(), sizes.saved, scratch.data(), sizes.scratch};

  std::vector<double> step_seconds;
  for (int s = -2; s < o.steps; ++s) {  // two warm-up steps: first touch, oneDNN's JIT
    g_recording = s >= 0;
    g_step = static_cast<std::size_t>(std::max(s, 0));
    ++step.step;
    const auto t0 = Clock::now();
    layer.forward(x.data(), y.data(), o.batch, o.seq, nullptr, step, ws, {});
    layer.backward(dy.data(), dx.data(), ws, {});
    if (s >= 0) step_seconds.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  g_recording = false;
  // One shape: the layer made its 18 products once, in kProductNames' order. Anything else means
  // the layer's Plans changed and the names above would be wrong.
  if (g_plans_made != kProducts)
    pld::detail::throw_error("the layer made ", g_plans_made, " products for one shape, not ", kProducts, ": update kProductNames");

  const double step_ms = 1e3 * median(step_seconds);
  struct Row {
    std::string name;
    double ms, calls, gflops;
    bool product;
  };
  std::vector<Row> rows;
  double products_ms = 0, passes_ms = 0, product_flops = 0;
  for (auto& [name, st] : stats()) {
    st.seconds.resize(static_cast<std::size_t>(o.steps), 0.0);
    const double ms = 1e3 * median(st.seconds);
    const double flops_per_step = st.flops / o.steps;
    rows.push_back({name, ms, static_cast<double>(st.calls) / o.steps, st.product && ms > 0 ? flops_per_step / ms * 1e-6 : 0.0, st.product});
    (st.product ? products_ms : passes_ms) += ms;
    if (st.product) product_flops += flops_per_step;
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.ms > b.ms; });

  const double layer_flops = 3 * pld::cpu::SharedPreLnLayer<T>::forward_flops(cfg, o.batch, o.seq);
  std::printf("\n### %s, %s (B=%d, T=%d, dropout %.2g): %s\n\n", kSizes[size].name, mode.c_str(), o.batch, o.seq, o.dropout,
              layer.handle().last_implementation().c_str());
  std::printf("forward+backward %.2f ms per step (median of %d), %.1f GFLOP/s, %.0f%% of the %s ceiling (%.1f GFLOP/s, the "
              "(%d x %d) x (%d x %d) product in the same run)\n\n",
              step_ms, o.steps, layer_flops / step_ms * 1e-6, 100.0 * layer_flops / step_ms * 1e-6 / ceiling,
              bf16_products ? "bf16" : "fp32", ceiling, M, H, H, 4 * H);
  std::printf("| what | calls/step | ms/step | %% of step | GFLOP/s | %% of ceiling |\n|---|---:|---:|---:|---:|---:|\n");
  for (const Row& r : rows) {
    if (r.product)
      std::printf("| %s | %.0f | %.3f | %.1f%% | %.0f | %.0f%% |\n", r.name.c_str(), r.calls, r.ms, 100.0 * r.ms / step_ms, r.gflops,
                  100.0 * r.gflops / ceiling);
    else
      std::printf("| %s | %.0f | %.3f | %.1f%% | | |\n", r.name.c_str(), r.calls, r.ms, 100.0 * r.ms / step_ms);
  }
  const double other = step_ms - products_ms - passes_ms;
  std::printf("| **all products** | | %.3f | %.1f%% | %.0f | %.0f%% |\n", products_ms, 100.0 * products_ms / step_ms,
              product_flops / products_ms * 1e-6, 100.0 * product_flops / products_ms * 1e-6 / ceiling);
  std::printf("| **all passes** | | %.3f | %.1f%% | | |\n", passes_ms, 100.0 * passes_ms / step_ms);
  std::printf("| the layer logic between calls | | %.3f | %.1f%% | | |\n", other, 100.0 * other / step_ms);
  std::printf("\nAt the ceiling the products would take %.3f ms: the step would be %.0f%% of the ceiling with its passes as they are.\n",
              product_flops / ceiling * 1e-6, 100.0 * layer_flops / ((product_flops / ceiling * 1e-6 + passes_ms + std::max(other, 0.0)) * 1e6) / ceiling);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
#if defined(_OPENMP)
  if (o.threads > 0) omp_set_num_threads(o.threads);
  const int threads = omp_get_max_threads();
#else
  const int threads = 1;
#endif
  std::printf("# cpu_layer_profile: %d threads, engine %s, ISA %s\n", threads, pld::cpu::has_onednn() ? "oneDNN" : "Eigen",
              pld::cpu::cpu_isa_name().c_str());
  try {
    for (int size : o.sizes)
      for (const std::string& mode : o.modes) {
        if (mode != "fp32" && !(pld::cpu::has_onednn() && pld::cpu::onednn_has_bf16_matmul())) {
          std::printf("\n### %s, %s: skipped (no bf16 matmul on this CPU or build)\n", kSizes[size].name, mode.c_str());
          continue;
        }
        if (mode == "bf16-storage") profile<pld::cpu::bf16>(o, size, mode);
        else profile<float>(o, size, mode);
      }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cpu_layer_profile: %s\n", e.what());
    return 1;
  }
  return 0;
}
