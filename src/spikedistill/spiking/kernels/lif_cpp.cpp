// The multi-step LIF scans of spikedistill as plain C++ loops on the CPU (the ``cpp`` backend,
// see kernels/base.py and cpp.py): the recurrences of recurrence.py and reference.py, one pass over memory
// and one call per scan, with a call cost near an ATen op's.
//
// Layout. A step holds M = rows * C * L neurons, contiguous; x [T, M] (``static``: [M], the same
// drive at every step). The neuron input is y_t = x_t * scale[ch] + shift[ch] (+ r_t), with
// ch = (i / L) % C; without scale/shift (a plain LIF) y_t = x_t. Each thread takes a range of
// neurons and runs all T steps over it, SEGMENT neurons at a time, keeping the post-reset
// membrane u (and in backward the recomputed v_t) of the segment in a small buffer.
//
// Every product and sum is rounded on its own (built with -ffp-contract=off), in the order of
// the Python scans, so the spikes are bit-identical to the ``torch`` and ``compile`` backends.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

namespace {

constexpr int64_t SEGMENT = 2048;  // neurons per inner loop: T * SEGMENT floats stay in cache
constexpr int64_t GRAIN = 16384;   // neurons per parallel task

struct Neuron {
  double decay, threshold, gain;  // gain = 1 - decay if decay_input else 1
  bool hard, detach;
};

// The drive's layout: per-step size M, channel blocks of L neurons, C channels.
struct Drive {
  int64_t T, M, C, L;
  bool is_static;
};

template <typename scalar_t>
struct Affine {  // y = x * scale + shift (+ r), or y = x
  const scalar_t* x;
  const scalar_t* scale;  // null: no affine
  const scalar_t* shift;
  const scalar_t* residual;  // null or [T, M]
};

// Calls fn(i0, i1, scale, shift) for runs of at most SEGMENT neurons in [begin, end) that
// share a channel.
template <typename scalar_t, typename Fn>
void for_each_run(const Drive& d, const Affine<scalar_t>& a, int64_t begin, int64_t end, Fn fn) {
  if (a.scale == nullptr) {
    for (int64_t i = begin; i < end; i += SEGMENT) fn(i, std::min(end, i + SEGMENT), 1, 0);
    return;
  }
  int64_t channel = (begin / d.L) % d.C, block_end = (begin / d.L + 1) * d.L;
  for (int64_t i = begin; i < end;) {
    const int64_t stop = std::min({end, block_end, i + SEGMENT});
    fn(i, stop, a.scale[channel], a.shift[channel]);
    i = stop;
    if (i == block_end) {
      block_end += d.L;
      channel = channel + 1 == d.C ? 0 : channel + 1;
    }
  }
}

// Calls fn(t, first, last) for t = 0 .. T-1 (or T-1 .. 0 when kReverse), ``first`` and
// ``last`` as compile-time flags: the first step of a scan reads no carried state, the last
// writes none.
template <bool kReverse, typename Fn>
void for_each_step(int64_t T, Fn fn) {
  for (int64_t k = 0; k < T; ++k) {
    const int64_t t = kReverse ? T - 1 - k : k;
    if (T == 1) {
      fn(t, std::true_type{}, std::true_type{});
    } else if (k == 0) {
      fn(t, std::true_type{}, std::false_type{});
    } else if (k + 1 == T) {
      fn(t, std::false_type{}, std::true_type{});
    } else {
      fn(t, std::false_type{}, std::false_type{});
    }
  }
}

// Whether neuron k fired: the saved 0/1 byte f[k] (kSaved), else v >= th.
template <bool kSaved, typename scalar_t>
inline bool fired(const uint8_t* f, int64_t k, scalar_t v, scalar_t th) {
  if constexpr (kSaved) {
    return f[k] != 0;
  } else {
    return v >= th;
  }
}

// One step of ``charge`` over len neurons, every pointer at the step's first neuron. Branch-free
// (the flags are template parameters, the constants values), so the loop vectorises.
template <typename scalar_t, bool kRecompute, bool kKeepV, bool kResidual, bool kFirst, bool kLast>
void charge_step(int64_t len, const scalar_t* __restrict__ x, const scalar_t* __restrict__ r,
                 const uint8_t* __restrict__ f, scalar_t* __restrict__ v_t,
                 scalar_t* __restrict__ s_t, uint8_t* __restrict__ b_t, scalar_t* __restrict__ u,
                 const scalar_t sc, const scalar_t sh, const scalar_t gain, const scalar_t decay,
                 const scalar_t th, const bool hard) {
  for (int64_t k = 0; k < len; ++k) {
    scalar_t y = x[k] * sc + sh;
    if constexpr (kResidual) y = y + r[k];
    // v = gain y + decay u, each product rounded (gain = 1 is exact)
    scalar_t v = y * gain;
    if constexpr (!kFirst) v = v + decay * u[k];
    const bool s = fired<kRecompute>(f, k, v, th);
    const scalar_t sf = s ? scalar_t(1) : scalar_t(0);
    if constexpr (kKeepV) v_t[k] = v;
    if constexpr (!kRecompute) {
      s_t[k] = sf;
      b_t[k] = s;
    }
    if constexpr (!kLast) u[k] = v - (hard ? v : th) * sf;  // hard: v (1 - s), soft: v - th s
  }
}

// Forward over neurons [i0, i1) (one channel): the pre-reset membrane of each step goes to
// v_out (stride v_stride) when kKeepV, the spikes to s_out and bits unless kRecompute, in which
// case ``fired`` (the forward's spikes, 0/1 bytes) decides the resets: a recompute that follows
// its forward. u: a buffer of i1 - i0 scalars (the post-reset membrane carried to the next step).
template <typename scalar_t, bool kRecompute, bool kKeepV, bool kResidual>
void charge(const Neuron& n, const Drive& d, const Affine<scalar_t>& a, int64_t i0, int64_t i1,
            scalar_t sc, scalar_t sh, const uint8_t* fired, scalar_t* v_out, int64_t v_stride,
            scalar_t* s_out, uint8_t* bits, scalar_t* u) {
  for_each_step<false>(d.T, [&](int64_t t, auto first, auto last) {
    charge_step<scalar_t, kRecompute, kKeepV, kResidual, decltype(first)::value,
                decltype(last)::value>(
        i1 - i0, a.x + (d.is_static ? 0 : t * d.M) + i0,
        kResidual ? a.residual + t * d.M + i0 : nullptr,
        kRecompute ? fired + t * d.M + i0 : nullptr, kKeepV ? v_out + t * v_stride : nullptr,
        kRecompute ? nullptr : s_out + t * d.M + i0, kRecompute ? nullptr : bits + t * d.M + i0,
        u, sc, sh, scalar_t(n.gain), scalar_t(n.decay), scalar_t(n.threshold), n.hard);
  });
}

// The surrogates of surrogate.py, sg(x) with x = v - threshold.
enum Surrogate : int64_t { TRIANGLE = 0, SIGMOID = 1, ATAN = 2, RECTANGLE = 3 };

template <int64_t kind, typename scalar_t>
inline scalar_t surrogate(scalar_t x, scalar_t alpha) {
  if constexpr (kind == TRIANGLE) {
    const scalar_t y = std::abs(x) * (-alpha * alpha) + alpha;
    return y > 0 ? y : scalar_t(0);
  } else if constexpr (kind == SIGMOID) {
    const scalar_t s = scalar_t(1) / (scalar_t(1) + std::exp(-(x * alpha)));
    return alpha * (scalar_t(1) - s) * s;
  } else if constexpr (kind == ATAN) {
    const scalar_t z = x * scalar_t(M_PI / 2 * alpha);
    return scalar_t(alpha / 2) / (z * z + scalar_t(1));
  } else {
    return std::abs(x) < scalar_t(0.5 / alpha) ? alpha : scalar_t(0);
  }
}

// One step of ``gradient`` over len neurons, every pointer at the step's first neuron.
template <int64_t kind, bool kFired, bool kSum, bool kFirst, bool kLast, typename scalar_t>
void gradient_step(int64_t len, const scalar_t* __restrict__ ds, const scalar_t* __restrict__ v,
                   const uint8_t* __restrict__ f, scalar_t* __restrict__ o,
                   scalar_t* __restrict__ later, const scalar_t alpha, const scalar_t gain,
                   const scalar_t decay, const scalar_t th, const bool hard, const bool detach) {
  for (int64_t k = 0; k < len; ++k) {
    const scalar_t vk = v[k];
    const scalar_t sg = surrogate<kind>(vk - th, alpha);
    scalar_t g = ds[k] * sg;
    if constexpr (!kFirst) {
      const bool s = fired<kFired>(f, k, vk, th);
      const scalar_t not_fired = s ? scalar_t(0) : scalar_t(1);
      const scalar_t du =
          (hard ? not_fired : scalar_t(1)) - (detach ? scalar_t(0) : (hard ? vk : th)) * sg;
      g = g + decay * du * later[k];
    }
    if constexpr (!kLast) later[k] = g;
    const scalar_t dx = g * gain;  // gain = 1 is exact
    if constexpr (kSum && !kFirst) {
      o[k] = o[k] + dx;
    } else {
      o[k] = dx;
    }
  }
}

// Reverse recurrence over neurons [i0, i1): g_t = ds_t sg_t + decay du_t/dv_t g_{t+1},
// dx_t = gain g_t, written to out[t * M] (kSum: summed over t into out[0]). v holds v_t at
// stride v_stride; ``fired`` (kFired, 0/1 bytes) or else v_t >= threshold tells the resets.
// later: a buffer of i1 - i0 scalars (g_{t+1}). du/dv = a - b sg with a = 1 - s (hard) or 1,
// and b = 0 (detached reset), v (hard) or threshold (soft): the four cases of reference.py.
template <int64_t kind, bool kFired, bool kSum, typename scalar_t>
void gradient(const Neuron& n, const Drive& d, scalar_t alpha, int64_t i0, int64_t i1,
              const scalar_t* grad, const scalar_t* v, int64_t v_stride, const uint8_t* fired,
              scalar_t* out, scalar_t* later) {
  for_each_step<true>(d.T, [&](int64_t t, auto first, auto last) {
    gradient_step<kind, kFired, kSum, decltype(first)::value, decltype(last)::value>(
        i1 - i0, grad + t * d.M + i0, v + t * v_stride, kFired ? fired + t * d.M + i0 : nullptr,
        out + (kSum ? 0 : t * d.M) + i0, later, alpha, scalar_t(n.gain), scalar_t(n.decay),
        scalar_t(n.threshold), n.hard, n.detach);
  });
}

template <typename Fn>
void dispatch_surrogate(int64_t kind, Fn fn) {
  switch (kind) {
    case TRIANGLE: fn(std::integral_constant<int64_t, TRIANGLE>{}); break;
    case SIGMOID: fn(std::integral_constant<int64_t, SIGMOID>{}); break;
    case ATAN: fn(std::integral_constant<int64_t, ATAN>{}); break;
    case RECTANGLE: fn(std::integral_constant<int64_t, RECTANGLE>{}); break;
    default: TORCH_CHECK(false, "unknown surrogate id ", kind);
  }
}

template <typename Fn>
void dispatch_bool(bool value, Fn fn) {  // a runtime flag as a compile-time one
  if (value) {
    fn(std::true_type{});
  } else {
    fn(std::false_type{});
  }
}

Drive drive_of(const at::Tensor& x, int64_t T, int64_t C, int64_t L, bool is_static) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous(), "x must be a contiguous CPU tensor");
  const int64_t M = is_static ? x.numel() : x.numel() / T;
  TORCH_CHECK(T > 0 && C > 0 && L > 0 && M % (C * L) == 0 && (is_static || M * T == x.numel()),
              "x does not hold T steps of [rows, C, L] neurons");
  return {T, M, C, L, is_static};
}

// A per-channel tensor the kernel reads or writes C values of: nothing else is safe.
void check_channels(const std::optional<at::Tensor>& t, const at::Tensor& x, int64_t C,
                    const char* name) {
  TORCH_CHECK(!t.has_value() || (t->device().is_cpu() && t->is_contiguous() &&
                                 t->numel() == C && t->scalar_type() == x.scalar_type()),
              name, " must be a contiguous CPU tensor of C = ", C, " values of x's dtype");
}

template <typename scalar_t>
Affine<scalar_t> affine_of(const at::Tensor& x, const std::optional<at::Tensor>& scale,
                           const std::optional<at::Tensor>& shift,
                           const std::optional<at::Tensor>& residual, const Drive& d) {
  Affine<scalar_t> a{x.data_ptr<scalar_t>(), nullptr, nullptr, nullptr};
  TORCH_CHECK(scale.has_value() == shift.has_value(), "scale and shift come together");
  if (scale.has_value()) {
    TORCH_CHECK(scale->is_contiguous() && scale->numel() == d.C && shift->is_contiguous() &&
                    shift->numel() == d.C && scale->scalar_type() == x.scalar_type() &&
                    shift->scalar_type() == x.scalar_type(),
                "scale and shift must be contiguous [C] tensors of x's dtype");
    a.scale = scale->data_ptr<scalar_t>();
    a.shift = shift->data_ptr<scalar_t>();
  }
  if (residual.has_value()) {
    TORCH_CHECK(residual->is_contiguous() && residual->numel() == d.T * d.M &&
                    residual->scalar_type() == x.scalar_type(),
                "residual must be a contiguous [T, M] tensor of x's dtype");
    a.residual = residual->data_ptr<scalar_t>();
  }
  return a;
}

// (spikes [T, M] in x's dtype, the same as bool, membrane [T, M] or an empty tensor)
std::tuple<at::Tensor, at::Tensor, at::Tensor> lif_forward(
    const at::Tensor& x, const std::optional<at::Tensor>& scale,
    const std::optional<at::Tensor>& shift, const std::optional<at::Tensor>& residual, int64_t T,
    int64_t C, int64_t L, bool is_static, double decay, double threshold, double gain, bool hard,
    bool keep_membrane) {
  const Drive d = drive_of(x, T, C, L, is_static);
  const Neuron n{decay, threshold, gain, hard, false};
  auto spikes = at::empty({T * d.M}, x.options());
  auto bits = at::empty({T * d.M}, x.options().dtype(at::kBool));
  auto membrane = keep_membrane ? at::empty({T * d.M}, x.options()) : at::empty({0}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spikedistill_lif_forward", [&] {
    const auto a = affine_of<scalar_t>(x, scale, shift, residual, d);
    scalar_t* s = spikes.data_ptr<scalar_t>();
    auto* b = reinterpret_cast<uint8_t*>(bits.data_ptr<bool>());
    scalar_t* v = keep_membrane ? membrane.data_ptr<scalar_t>() : nullptr;
    dispatch_bool(keep_membrane, [&](auto keep_v) {
      dispatch_bool(a.residual != nullptr, [&](auto with_residual) {
        at::parallel_for(0, d.M, GRAIN, [&](int64_t begin, int64_t end) {
          std::vector<scalar_t> u(SEGMENT);
          for_each_run(d, a, begin, end, [&](int64_t i0, int64_t i1, scalar_t sc, scalar_t sh) {
            charge<scalar_t, false, decltype(keep_v)::value, decltype(with_residual)::value>(
                n, d, a, i0, i1, sc, sh, nullptr, keep_v ? v + i0 : nullptr, d.M, s, b, u.data());
          });
        });
      });
    });
  });
  return {spikes, bits, membrane};
}

// dL/dx [T, M] of a plain LIF from dL/ds and its saved pre-reset membrane.
at::Tensor lif_backward(const at::Tensor& grad, const at::Tensor& membrane, int64_t T,
                        double decay, double threshold, double gain, bool hard, bool detach,
                        int64_t surrogate_kind, double alpha) {
  const Drive d = drive_of(membrane, T, 1, 1, false);
  TORCH_CHECK(grad.is_contiguous() && grad.sizes() == membrane.sizes() &&
                  grad.scalar_type() == membrane.scalar_type(),
              "grad must be contiguous and shaped like the membrane");
  const Neuron n{decay, threshold, gain, hard, detach};
  auto out = at::empty_like(membrane);
  AT_DISPATCH_FLOATING_TYPES(membrane.scalar_type(), "spikedistill_lif_backward", [&] {
    const scalar_t* g = grad.data_ptr<scalar_t>();
    const scalar_t* v = membrane.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    dispatch_surrogate(surrogate_kind, [&](auto kind) {
      at::parallel_for(0, d.M, GRAIN, [&](int64_t begin, int64_t end) {
        std::vector<scalar_t> later(SEGMENT);
        for (int64_t i0 = begin; i0 < end; i0 += SEGMENT) {
          const int64_t i1 = std::min(end, i0 + SEGMENT);
          gradient<decltype(kind)::value, false, false>(n, d, scalar_t(alpha), i0, i1, g, v + i0, d.M, nullptr,
                                       o, later.data());
        }
      });
    });
  });
  return out;
}

// dL/dy [T, M] (static: [M], summed over steps) of a LIF driven by y = x scale + shift (+ r):
// the membrane is recomputed along the forward's spikes ``fired`` ([T, M], bool or 0/1 bytes:
// read as bytes; callers need no dtype view, which some Inductor versions cannot lower).
at::Tensor norm_lif_backward(const at::Tensor& grad, const at::Tensor& fired, const at::Tensor& x,
                             const at::Tensor& scale, const at::Tensor& shift,
                             const std::optional<at::Tensor>& residual, int64_t T, int64_t C,
                             int64_t L, bool is_static, double decay, double threshold,
                             double gain, bool hard, bool detach, int64_t surrogate_kind,
                             double alpha) {
  const Drive d = drive_of(x, T, C, L, is_static);
  TORCH_CHECK(grad.is_contiguous() && grad.numel() == T * d.M &&
                  grad.scalar_type() == x.scalar_type(),
              "grad must be a contiguous [T, M] tensor of x's dtype");
  TORCH_CHECK(fired.is_contiguous() && fired.numel() == T * d.M &&
                  (fired.scalar_type() == at::kBool || fired.scalar_type() == at::kByte),
              "fired must be contiguous [T, M] bool or 0/1 bytes");
  const Neuron n{decay, threshold, gain, hard, detach};
  auto out = at::empty({is_static ? d.M : T * d.M}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spikedistill_norm_lif_backward", [&] {
    const auto a = affine_of<scalar_t>(x, scale, shift, residual, d);
    const scalar_t* g = grad.data_ptr<scalar_t>();
    const auto* f = static_cast<const uint8_t*>(fired.data_ptr());
    scalar_t* o = out.data_ptr<scalar_t>();
    dispatch_surrogate(surrogate_kind, [&](auto kind) {
      dispatch_bool(is_static, [&](auto sum_steps) {
        dispatch_bool(a.residual != nullptr, [&](auto with_residual) {
          at::parallel_for(0, d.M, GRAIN, [&](int64_t begin, int64_t end) {
            std::vector<scalar_t> u(SEGMENT), later(SEGMENT), v(T * SEGMENT);
            for_each_run(d, a, begin, end,
                         [&](int64_t i0, int64_t i1, scalar_t sc, scalar_t sh) {
              charge<scalar_t, true, true, decltype(with_residual)::value>(n, d, a, i0, i1, sc, sh, f, v.data(),
                                                          SEGMENT, nullptr, nullptr, u.data());
              gradient<decltype(kind)::value, true, decltype(sum_steps)::value>(n, d, scalar_t(alpha), i0, i1, g, v.data(),
                                              SEGMENT, f, o, later.data());
            });
          });
        });
      });
    });
  });
  return out;
}

// -- BatchNorm statistics and backward -------------------------------------------------------
// Parallel tasks over channel blocks of L neurons: about GRAIN neurons each.
int64_t block_grain(int64_t L) { return std::max<int64_t>(1, GRAIN / L); }

// Per-channel totals (Sum a, Sum b) over ``blocks`` blocks of L neurons, block k in channel
// k % C: block_sums(k, c) returns the block's pair; each thread adds into its own slots.
template <typename Fn>
std::pair<std::vector<double>, std::vector<double>> channel_sums(int64_t blocks, int64_t C,
                                                                 int64_t L, Fn block_sums) {
  std::vector<double> slots(2 * C * at::get_num_threads(), 0.0);  // [threads, 2, C]
  at::parallel_for(0, blocks, block_grain(L), [&](int64_t b0, int64_t b1) {
    double* mine = slots.data() + 2 * C * at::get_thread_num();
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t c = b % C;
      const auto [a, z] = block_sums(b, c);
      mine[c] += a;
      mine[C + c] += z;
    }
  });
  std::vector<double> a(C, 0.0), z(C, 0.0);
  for (size_t base = 0; base < slots.size(); base += 2 * C) {
    for (int64_t c = 0; c < C; ++c) {
      a[c] += slots[base + c];
      z[c] += slots[base + C + c];
    }
  }
  return {a, z};
}

// (mean, invstd = (var + eps)^-1/2) per channel of x [rows, C, L] with the biased variance; a
// given running mean and variance are updated as BatchNorm does (unbiased variance). Sums of
// x - x[c, 0] in double: the shift keeps a large mean from cancelling the variance.
std::tuple<at::Tensor, at::Tensor> batch_stats(const at::Tensor& x, int64_t C, int64_t L,
                                               const std::optional<at::Tensor>& running_mean,
                                               const std::optional<at::Tensor>& running_var,
                                               double momentum, double eps) {
  const Drive d = drive_of(x, 1, C, L, true);
  const int64_t blocks = d.M / L, n = d.M / C;
  TORCH_CHECK(n > 1, "BatchNorm needs more than one value per channel");
  check_channels(running_mean, x, C, "running_mean");
  check_channels(running_var, x, C, "running_var");
  auto mean = at::empty({C}, x.options()), invstd = at::empty({C}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spikedistill_batch_stats", [&] {
    const scalar_t* p = x.data_ptr<scalar_t>();
    const auto [s1, s2] = channel_sums(blocks, C, L, [&](int64_t b, int64_t c) {
      const double k = p[c * L];
      const scalar_t* q = p + b * L;
      double a = 0, z = 0;
      _Pragma("omp simd reduction(+ : a, z)")
      for (int64_t l = 0; l < L; ++l) {
        const double shifted = double(q[l]) - k;
        a += shifted;
        z += shifted * shifted;
      }
      return std::make_pair(a, z);
    });
    scalar_t* m = mean.data_ptr<scalar_t>();
    scalar_t* is = invstd.data_ptr<scalar_t>();
    scalar_t* rm = running_mean ? running_mean->data_ptr<scalar_t>() : nullptr;
    scalar_t* rv = running_var ? running_var->data_ptr<scalar_t>() : nullptr;
    for (int64_t c = 0; c < C; ++c) {
      const double shifted = s1[c] / n, mu = double(p[c * L]) + shifted;
      const double var = std::max(0.0, s2[c] / n - shifted * shifted);
      m[c] = mu;
      is[c] = 1.0 / std::sqrt(var + eps);
      if (rm != nullptr) rm[c] = momentum * mu + (1 - momentum) * double(rm[c]);
      if (rv != nullptr) rv[c] = momentum * var * n / (n - 1) + (1 - momentum) * double(rv[c]);
    }
  });
  return {mean, invstd};
}

// The whole backward of BatchNorm -> LIF (norm_lif.py): dL/dy by the LIF's recompute and
// reverse recurrence (as norm_lif_backward); a pass for the per-channel sums Sum dy and
// Sum dy (x - mean); a pass for BatchNorm's input gradient
//   dL/dx = w invstd (dy - Sum dy / n - (x - mean) invstd^2 Sum dy (x - mean) / n),
// dL/dw = invstd Sum dy (x - mean), dL/db = Sum dy. Returns (dL/dx, dL/dw, dL/db, dL/dy);
// dL/dy only when keep_grad_y (a residual's gradient), else dL/dx is written over it.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> norm_lif_input_backward(
    const at::Tensor& grad, const at::Tensor& fired, const at::Tensor& x, const at::Tensor& scale,
    const at::Tensor& shift, const std::optional<at::Tensor>& residual,
    const std::optional<at::Tensor>& weight, const at::Tensor& mean, const at::Tensor& invstd,
    int64_t T, int64_t C, int64_t L, bool is_static, double decay, double threshold, double gain,
    bool hard, bool detach, int64_t surrogate_kind, double alpha, bool keep_grad_y) {
  auto grad_y = norm_lif_backward(grad, fired, x, scale, shift, residual, T, C, L, is_static,
                                  decay, threshold, gain, hard, detach, surrogate_kind, alpha);
  check_channels(weight, x, C, "weight");
  check_channels(mean, x, C, "mean");
  check_channels(invstd, x, C, "invstd");
  const int64_t total = grad_y.numel(), blocks = total / L, n = total / C;
  auto grad_x = keep_grad_y ? at::empty_like(grad_y) : grad_y;
  auto grad_w = at::empty({C}, x.options()), grad_b = at::empty({C}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spikedistill_norm_lif_input_backward", [&] {
    const scalar_t* dy = grad_y.data_ptr<scalar_t>();
    const scalar_t* px = x.data_ptr<scalar_t>();
    const scalar_t* mu = mean.data_ptr<scalar_t>();
    const scalar_t* is = invstd.data_ptr<scalar_t>();
    const scalar_t* w = weight ? weight->data_ptr<scalar_t>() : nullptr;
    const auto [sum_dy, sum_dy_xmu] = channel_sums(blocks, C, L, [&](int64_t b, int64_t c) {
      const scalar_t m = mu[c];
      const scalar_t* g = dy + b * L;
      const scalar_t* q = px + b * L;
      double a = 0, z = 0;
      _Pragma("omp simd reduction(+ : a, z)")
      for (int64_t l = 0; l < L; ++l) {
        a += g[l];
        z += double(g[l]) * double(q[l] - m);
      }
      return std::make_pair(a, z);
    });
    std::vector<scalar_t> a(C), mean_dy(C), k(C);
    scalar_t* gw = grad_w.data_ptr<scalar_t>();
    scalar_t* gb = grad_b.data_ptr<scalar_t>();
    for (int64_t c = 0; c < C; ++c) {
      a[c] = (w == nullptr ? scalar_t(1) : w[c]) * is[c];
      mean_dy[c] = sum_dy[c] / n;
      k[c] = double(is[c]) * double(is[c]) * sum_dy_xmu[c] / n;
      gw[c] = sum_dy_xmu[c] * double(is[c]);
      gb[c] = sum_dy[c];
    }
    scalar_t* gx = grad_x.data_ptr<scalar_t>();
    at::parallel_for(0, blocks, block_grain(L), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t c = b % C;
        const scalar_t ac = a[c], md = mean_dy[c], kc = k[c], m = mu[c];
        const scalar_t* g = dy + b * L;
        const scalar_t* q = px + b * L;
        scalar_t* out = gx + b * L;
        for (int64_t l = 0; l < L; ++l) out[l] = (g[l] - md - (q[l] - m) * kc) * ac;
      }
    });
  });
  return {grad_x, grad_w, grad_b, keep_grad_y ? grad_y : at::empty({0}, x.options())};
}

}  // namespace

// Schemas, then the CPU kernels (so that tracing can give the ops fake kernels: cpp.py).
TORCH_LIBRARY(spikedistill_cpp, m) {
  m.def(
      "lif_forward(Tensor x, Tensor? scale, Tensor? shift, Tensor? residual, int T, int C, "
      "int L, bool is_static, float decay, float threshold, float gain, bool hard, "
      "bool keep_membrane) -> (Tensor, Tensor, Tensor)");
  m.def(
      "lif_backward(Tensor grad, Tensor membrane, int T, float decay, float threshold, "
      "float gain, bool hard, bool detach, int surrogate, float alpha) -> Tensor");
  m.def(
      "norm_lif_backward(Tensor grad, Tensor fired, Tensor x, Tensor scale, Tensor shift, "
      "Tensor? residual, int T, int C, int L, bool is_static, float decay, float threshold, "
      "float gain, bool hard, bool detach, int surrogate, float alpha) -> Tensor");
  m.def(
      "batch_stats(Tensor x, int C, int L, Tensor(a!)? running_mean, Tensor(b!)? running_var, "
      "float momentum, float eps) -> (Tensor, Tensor)");
  m.def(
      "norm_lif_input_backward(Tensor grad, Tensor fired, Tensor x, Tensor scale, Tensor shift, "
      "Tensor? residual, Tensor? weight, Tensor mean, Tensor invstd, int T, int C, int L, "
      "bool is_static, float decay, float threshold, float gain, bool hard, bool detach, "
      "int surrogate, float alpha, bool keep_grad_y) -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(spikedistill_cpp, CPU, m) {
  m.impl("lif_forward", &lif_forward);
  m.impl("lif_backward", &lif_backward);
  m.impl("norm_lif_backward", &norm_lif_backward);
  m.impl("batch_stats", &batch_stats);
  m.impl("norm_lif_input_backward", &norm_lif_input_backward);
}
