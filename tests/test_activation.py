"""`activation.gelu_erf` and `intercept_gelu`: jax's exact GELU to < 1e-6, in transformers' layers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmtl_jax import activation
from cmtl_jax import model as model_lib
from tests.conftest import max_abs_diff as _max_diff
from tests.conftest import train_loss_and_grads

_JAX_GELU = functools.partial(jax.nn.gelu, approximate=False)


def test_gelu_erf_is_jax_exact_gelu_to_1e_6():
  x = jnp.concatenate([jnp.linspace(-12.0, 12.0, 200_001), jnp.array([0.0, -0.0, 1e-30, -1e-30])])
  assert float(jnp.max(jnp.abs(activation.gelu_erf(x) - _JAX_GELU(x)))) < 1e-6
  grad = lambda f: jax.vmap(jax.grad(f))(x)
  assert float(jnp.max(jnp.abs(grad(activation.gelu_erf) - grad(_JAX_GELU)))) < 1e-6
  # The values people look at: GELU(1) = Phi(1) = 0.8413447..., GELU(-1) = -(1 - Phi(1)).
  np.testing.assert_allclose(activation.gelu_erf(jnp.array([1.0, -1.0])), [0.8413447, -0.1586553], rtol=1e-6)
  assert activation.gelu_erf(jnp.ones(3, jnp.bfloat16)).dtype == jnp.bfloat16


@pytest.fixture(name='hybrid')
def _hybrid(tiny_config):
  tiny_config.beit.hidden_act = 'gelu'  # transformers' default for both sides; said here, as the test relies on it.
  model, params, _, _ = model_lib.from_config(tiny_config, 10, jax.random.key(0))
  assert model.erf_gelu and model.bert_config.hidden_act == 'gelu'
  return model, params, jax.random.normal(jax.random.key(1), (8, 8, 8, 1))


def test_every_gelu_layer_computes_erf_and_none_erfc(hybrid):
  model, params, pixels = hybrid
  layers = model.beit_config.num_hidden_layers + model.bert_config.num_hidden_layers

  def count(m):
    text = str(jax.make_jaxpr(lambda p: m.apply({'params': p}, pixels))(params))
    return text.count(' erf '), text.count(' erfc ')

  assert count(model) == (layers, 0)
  assert count(model.clone(erf_gelu=False)) == (0, layers)


def test_the_intercepted_layers_are_transformers_own_with_another_activation(hybrid, monkeypatch):
  """With `gelu_erf` swapped for jax's own GELU, the intercepted model is the plain one bit for bit (the same
  parameters, loss and gradients), so the interceptor changes the activation and nothing else; with `gelu_erf`
  itself the two agree to rounding."""
  model, params, pixels = hybrid
  plain = model.clone(erf_gelu=False)
  reference = train_loss_and_grads(plain, params, pixels)
  ours = train_loss_and_grads(model, params, pixels)
  assert 0 < _max_diff(ours, reference) < 1e-5  # Another form of the same function: not bit-identical.
  assert _max_diff(jax.jit(model.init)(jax.random.key(4), pixels), jax.jit(plain.init)(jax.random.key(4), pixels)) == 0
  monkeypatch.setattr(activation, 'gelu_erf', _JAX_GELU)
  assert _max_diff(train_loss_and_grads(model, params, pixels), reference) == 0.0
  # A planted fault in the activation shows up in the same comparison.
  monkeypatch.setattr(activation, 'gelu_erf', lambda x: 1.0001 * _JAX_GELU(x))
  assert _max_diff(train_loss_and_grads(model, params, pixels), reference) > 0


def test_other_activations_are_left_alone(tiny_config):
  tiny_config.beit.hidden_act = 'relu'
  model, params, _, _ = model_lib.from_config(tiny_config, 10, jax.random.key(0))
  pixels = jax.random.normal(jax.random.key(1), (8, 8, 8, 1))
  text = str(jax.make_jaxpr(lambda p: model.apply({'params': p}, pixels))(params))
  assert text.count(' erf ') == model.bert_config.num_hidden_layers  # BERT's 'gelu' only, not BEiT's relu.
