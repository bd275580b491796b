// Row-major Eigen views over caller-owned buffers: the CPU backend's only "tensor" type. Every
// activation is a (rows, cols) row-major block; the comment next to each buffer gives its shape.
#pragma once

#include <Eigen/Core>

namespace pld::cpu {

template <class Scalar>
using MatrixR = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Scalar>
using MapR = Eigen::Map<MatrixR<Scalar>>;
template <class Scalar>
using ConstMapR = Eigen::Map<const MatrixR<Scalar>>;
template <class Scalar>
using RowVec = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>;
template <class Scalar>
using MapRowVec = Eigen::Map<RowVec<Scalar>>;
template <class Scalar>
using ConstMapRowVec = Eigen::Map<const RowVec<Scalar>>;

}  // namespace pld::cpu
