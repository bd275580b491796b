// Multi-head scaled dot-product self-attention core on a packed qkv buffer, with a key padding
// mask and dropout on the attention probabilities. The forward saves the softmax probabilities
// (pre-dropout); the backward recomputes the dropout mask from its key.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "pld/cpu/dropout.hpp"
#include "pld/cpu/eigen_maps.hpp"

namespace pld::cpu {

struct AttentionShape {
  int batch, seq, hidden, heads;
  int head_dim() const { return hidden / heads; }
};

namespace detail {
template <class Scalar>
using StridedMap = Eigen::Map<MatrixR<Scalar>, 0, Eigen::OuterStride<>>;
template <class Scalar>
using ConstStridedMap = Eigen::Map<const MatrixR<Scalar>, 0, Eigen::OuterStride<>>;
}  // namespace detail

// qkv (B*T, 3H): [q | k | v], head h in columns h*d .. h*d+d of each part.
// valid (B, T): 1 for real tokens, 0 for padding (null: all real). Keys that are padding get
// probability exactly 0. probs (B, heads, T, T) saved; ctx (B*T, H) written.
template <class Scalar>
void attention_forward(const Scalar* qkv, const std::uint8_t* valid, Scalar* probs, Scalar* ctx,
                       const AttentionShape& s, float dropout, const DropoutKey& key) {
  const int T = s.seq, H = s.hidden, d = s.head_dim();
  const Scalar scale = Scalar(1) / std::sqrt(static_cast<Scalar>(d));
  const std::ptrdiff_t TT = static_cast<std::ptrdiff_t>(T) * T;
#pragma omp parallel
  {
    MatrixR<Scalar> pd(T, T);
#pragma omp for schedule(static)
    for (int bh = 0; bh < s.batch * s.heads; ++bh) {
      const int b = bh / s.heads, h = bh % s.heads;
      const Scalar* base = qkv + static_cast<std::ptrdiff_t>(b) * T * 3 * H;
      detail::ConstStridedMap<Scalar> Q(base + h * d, T, d, Eigen::OuterStride<>(3 * H));
      detail::ConstStridedMap<Scalar> K(base + H + h * d, T, d, Eigen::OuterStride<>(3 * H));
      detail::ConstStridedMap<Scalar> V(base + 2 * H + h * d, T, d, Eigen::OuterStride<>(3 * H));
      MapR<Scalar> P(probs + bh * TT, T, T);
      P.noalias() = (Q * K.transpose()) * scale;
      const std::uint8_t* vb = valid ? valid + static_cast<std::ptrdiff_t>(b) * T : nullptr;
      for (int i = 0; i < T; ++i) {
        Scalar mx = -std::numeric_limits<Scalar>::infinity();
        for (int j = 0; j < T; ++j)
          if (!vb || vb[j]) mx = std::max(mx, P(i, j));
        Scalar sum = 0;
        for (int j = 0; j < T; ++j) {
          const Scalar e = (!vb || vb[j]) ? std::exp(P(i, j) - mx) : Scalar(0);
          P(i, j) = e;
          sum += e;
        }
        P.row(i) /= sum;
      }
      dropout_apply(P.data(), pd.data(), static_cast<std::size_t>(TT), static_cast<std::size_t>(bh * TT),
                    dropout, key);
      detail::StridedMap<Scalar> C(ctx + static_cast<std::ptrdiff_t>(b) * T * H + h * d, T, d,
                                   Eigen::OuterStride<>(H));
      C.noalias() = pd * V;
    }
  }
}

// dctx (B*T, H) in; dqkv (B*T, 3H) written.
template <class Scalar>
void attention_backward(const Scalar* dctx, const Scalar* qkv, const Scalar* probs, Scalar* dqkv,
                        const AttentionShape& s, float dropout, const DropoutKey& key) {
  const int T = s.seq, H = s.hidden, d = s.head_dim();
  const Scalar scale = Scalar(1) / std::sqrt(static_cast<Scalar>(d));
  const std::ptrdiff_t TT = static_cast<std::ptrdiff_t>(T) * T;
#pragma omp parallel
  {
    MatrixR<Scalar> pd(T, T), dp(T, T);
#pragma omp for schedule(static)
    for (int bh = 0; bh < s.batch * s.heads; ++bh) {
      const int b = bh / s.heads, h = bh % s.heads;
      const std::ptrdiff_t row0 = static_cast<std::ptrdiff_t>(b) * T;
      const Scalar* base = qkv + row0 * 3 * H;
      Scalar* dbase = dqkv + row0 * 3 * H;
      detail::ConstStridedMap<Scalar> Q(base + h * d, T, d, Eigen::OuterStride<>(3 * H));
      detail::ConstStridedMap<Scalar> K(base + H + h * d, T, d, Eigen::OuterStride<>(3 * H));
      detail::ConstStridedMap<Scalar> V(base + 2 * H + h * d, T, d, Eigen::OuterStride<>(3 * H));
      detail::StridedMap<Scalar> dQ(dbase + h * d, T, d, Eigen::OuterStride<>(3 * H));
      detail::StridedMap<Scalar> dK(dbase + H + h * d, T, d, Eigen::OuterStride<>(3 * H));
      detail::StridedMap<Scalar> dV(dbase + 2 * H + h * d, T, d, Eigen::OuterStride<>(3 * H));
      detail::ConstStridedMap<Scalar> dC(dctx + row0 * H + h * d, T, d, Eigen::OuterStride<>(H));
      ConstMapR<Scalar> P(probs + bh * TT, T, T);
      const auto offset = static_cast<std::size_t>(bh * TT);
      dropout_apply(P.data(), pd.data(), static_cast<std::size_t>(TT), offset, dropout, key);
      dV.noalias() = pd.transpose() * dC;
      dp.noalias() = dC * V.transpose();                                   // d(dropped P)
      dropout_apply(dp.data(), dp.data(), static_cast<std::size_t>(TT), offset, dropout, key);  // dP
      // Softmax backward: dS = P o (dP - rowsum(dP o P)), then the 1/sqrt(d) of the scores.
      for (int i = 0; i < T; ++i) {
        // A plain loop, not Eigen's dot: a vectorised reduction peels by the pointer's alignment,
        // which would make the bits depend on where the buffers happen to live.
        Scalar dot = 0;
        for (int j = 0; j < T; ++j) dot += dp(i, j) * P(i, j);
        dp.row(i) = (P.row(i).array() * (dp.row(i).array() - dot)).matrix() * scale;
      }
      dQ.noalias() = dp * K;
      dK.noalias() = dp.transpose() * Q;
    }
  }
}

}  // namespace pld::cpu
