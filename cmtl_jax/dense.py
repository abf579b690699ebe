"""Dense layers whose weight gradient is one 2-D matmul.

For `y = x @ kernel` with `x [..., in]`, JAX's transpose rule writes the kernel's gradient as a dot of `g` and `x`
contracting all their leading axes, then a transpose. XLA:CPU turns that into a copy of `g` transposed and an
Eigen dot with both operands transposed. `dense_matmul` computes the same values from
`x.reshape(-1, in)^T @ g.reshape(-1, out)` as one dot, which XLA:CPU runs without the copy: the hybrid's train
step on a 2-core CPU took ~0.95x the time (BUILD_NOTES.md, "CPU benchmark (measured)", session 16). Bit for bit
the same on CPU in float32 and bfloat16 (tests/test_dense.py) and float64 (checked by hand); a whole compiled epoch
may still round differently, as after any change to a program: XLA fuses the neighbouring ops differently.

`intercept_dense` applies it to every `flax.linen.Dense` called under it, transformers' own included, so the
hybrid gets it without forking transformers' modules.
"""

import contextlib
import functools

import flax.linen as nn
import jax
from jax import lax


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def dense_matmul(x, kernel, precision=None):
  """`x [..., in] @ kernel [in, out] -> [..., out]`, as `flax.linen.Dense` computes it."""
  return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())), precision=precision)


def _forward(x, kernel, precision):
  return dense_matmul(x, kernel, precision), (x, kernel)


def _backward(precision, residuals, g):
  x, kernel = residuals
  dx = lax.dot_general(g, kernel, (((g.ndim - 1,), (1,)), ((), ())), precision=precision)
  rows_x, rows_g = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
  dkernel = lax.dot_general(rows_x, rows_g, (((0,), (0,)), ((), ())), precision=precision)
  return dx, dkernel.astype(kernel.dtype)


dense_matmul.defvjp(_forward, _backward)


def _dense_interceptor(next_fun, args, kwargs, context):
  """`flax.linen.Dense.__call__` with `dense_matmul` for its dot; any other method or module, or a Dense given its
  own `dot_general`, runs unchanged."""
  module = context.module
  if (type(module) is not nn.Dense or context.method_name != '__call__' or kwargs or len(args) != 1
      or module.dot_general is not None or module.dot_general_cls is not None):
    return next_fun(*args, **kwargs)
  inputs, = args
  # The same parameters, promotion and bias as Dense.__call__ (flax 0.12); tests/test_dense.py compares the two.
  kernel = module.param('kernel', module.kernel_init, (inputs.shape[-1], module.features), module.param_dtype)
  bias = module.param('bias', module.bias_init, (module.features,), module.param_dtype) if module.use_bias else None
  inputs, kernel, bias = module.promote_dtype(inputs, kernel, bias, dtype=module.dtype)
  y = dense_matmul(inputs, kernel, module.precision)
  if bias is not None:
    y += bias.reshape((1,) * (y.ndim - 1) + (-1,))
  return y


@contextlib.contextmanager
def intercept_dense():
  """Within it, every `flax.linen.Dense` call (at trace time) computes its matmul with `dense_matmul`."""
  with nn.intercept_methods(_dense_interceptor):
    yield
