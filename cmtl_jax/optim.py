"""Optimisers: SGD with momentum or Adam, warmup + decay, clipping, weight decay, per-leaf LR multipliers.

The peak learning rate is injected with `optax.inject_hyperparams`, so it lives in the optimiser state as an array:
stacking states of models with different learning rates and `jax.vmap`-ing the update trains them all at once.
"""

import jax
import jax.numpy as jnp
import optax



def lr_shape(total_steps: int, warmup_fraction: float, decay: str):
  """Schedule of the LR as a fraction of its peak: linear warmup, then cosine/linear decay to 0, or constant."""
  warmup = int(round(warmup_fraction * total_steps))
  rest = max(total_steps - warmup, 1)
  if decay == 'cosine':
    after = optax.cosine_decay_schedule(1.0, rest)
  elif decay == 'linear':
    after = optax.linear_schedule(1.0, 0.0, rest)
  else:
    after = optax.constant_schedule(1.0)
  if not warmup:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, 1.0, warmup), after], [warmup])


# Exempt from weight decay besides vectors: BEiT's `no_weight_decay` (its `pos_embed` and `cls_token`; Bao et al.
# 2021, unilm/beit code), by the leaf names BEiT's and the hybrid's trees give them.
NO_DECAY = ('position_embeddings', 'cls_token')


def decay_mask(params):
  """Which leaves weight decay applies to, as BEiT's recipe says: every tensor of rank >= 2 except `NO_DECAY`
  (biases, LayerNorm scales and LayerScale vectors are rank 1, so exempt). A tree of bools like `params`."""
  return jax.tree_util.tree_map_with_path(
      lambda path, p: p.ndim >= 2 and getattr(path[-1], 'key', '') not in NO_DECAY, params)


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
  """`optax.clip_by_global_norm`'s maths, `g * max_norm / ||g||` when `||g|| > max_norm`, as one scalar factor
  per step. optax divides every element by the norm, and XLA:CPU writes that quotient out as one more pass over the
  gradients (a divide is too costly for it to repeat in both of Adam's moment passes); a product by a scalar is
  fused into them. Unclipped gradients pass unchanged; clipped ones may differ in the last bit; a NaN or inf norm
  gives what optax gives (tests/test_train.py). The train step took ~0.986x the time (BUILD_NOTES.md)."""
  def clip(updates, params=None):
    del params
    norm = optax.global_norm(updates)
    factor = jnp.where(norm < max_norm, 1.0, max_norm / norm)
    return jax.tree.map(lambda g: g * factor.astype(g.dtype), updates)
  return optax.stateless(clip)


def scale_by_tree(multipliers) -> optax.GradientTransformation:
  """Multiplies each update leaf by the matching leaf of `multipliers` (per-parameter learning-rate factors)."""
  return optax.stateless(lambda updates, params=None: jax.tree.map(lambda u, m: u * m, updates, multipliers))


def freeze(frozen) -> optax.GradientTransformation:
  """Sets the updates of `frozen` leaves to -0.0: x + (-0.0) == x bit for bit for every float x (+0.0 would turn
  a -0.0 weight into +0.0), so frozen weights stay bit-identical through `optax.apply_updates`."""
  return optax.stateless(lambda updates, params=None: jax.tree.map(
      lambda u, f: jnp.full_like(u, -0.0) if f else u, updates, frozen))


def make_optimizer(name: str, learning_rate, *, total_steps: int, warmup_fraction: float = 0.1,
                   decay: str = 'cosine', momentum: float = 0.9, weight_decay: float = 0.0,
                   grad_clip: float = 0.0, lr_multipliers=None, frozen=None) -> optax.GradientTransformation:
  """Builds the optimiser; its state holds `hyperparams['learning_rate']`, the peak LR, as a float32 array.

  Args:
    name: 'sgdm' or 'adam'.
    learning_rate: peak learning rate (a float, or a traced scalar when models are stacked).
    total_steps: optimiser steps in the whole run (for the schedule).
    lr_multipliers: optional tree like the params with a float factor per leaf (fresh weights get larger LRs).
    frozen: optional tree like the params, True on leaves that never change (no optimiser state, not counted in
      the clipping norm).
    weight_decay: decoupled (AdamW) or added to the gradient (SGDM), on the leaves `decay_mask` names.
  """
  shape = lr_shape(total_steps, warmup_fraction, decay)

  def factory(learning_rate):
    schedule = lambda count: learning_rate * shape(count)
    parts = []
    if grad_clip:
      parts.append(clip_by_global_norm(grad_clip))
    if name == 'sgdm':
      if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay, decay_mask))
      parts.append(optax.sgd(schedule, momentum=momentum))
    elif name == 'adam' and weight_decay:
      parts.append(optax.adamw(schedule, weight_decay=weight_decay, mask=decay_mask))
    elif name == 'adam':  # The same maths without the masked no-op decay pass (measured ~5 % of a CPU step).
      parts.append(optax.adam(schedule))
    else:
      raise ValueError(f'unknown optimizer {name!r}')
    if frozen is not None:  # Frozen leaves skip clipping and optimiser state, and their updates are -0.0.
      parts = [optax.masked(optax.chain(*parts), jax.tree.map(lambda f: not f, frozen))]
    if lr_multipliers is not None:
      parts.append(scale_by_tree(lr_multipliers))
    if frozen is not None:
      parts.append(freeze(frozen))
    return optax.chain(*parts)

  return optax.inject_hyperparams(factory)(learning_rate=jnp.asarray(learning_rate, jnp.float32))


def lr_multipliers(pretrained, fresh_multiplier: float):
  """1 for leaves loaded from a checkpoint, `fresh_multiplier` for leaves that start random."""
  return jax.tree.map(lambda p: 1.0 if p else float(fresh_multiplier), pretrained)


def layer_scales(layer_ids, decay: float):
  """Layer-wise LR decay (Bao et al. 2021, BEiT; Clark et al. 2020, ELECTRA): a leaf at depth `id` of
  `num_layers` gets decay ** (num_layers - 1 - id), so the top (head) gets 1 and the embeddings the smallest.
  `layer_ids` is `(tree of ids, num_layers)` (`models.build.layer_ids`); a tree of floats like the ids."""
  ids, num_layers = layer_ids
  return jax.tree.map(lambda i: float(decay) ** (num_layers - 1 - i), ids)


def multipliers(spec, task):
  """Per-leaf LR factors of `task` under a `resolve.OptimSpec`: `fresh_lr_multiplier` on leaves that start random,
  times the layer-decay scale (`layer_scales`) when `spec.layer_decay` < 1. The per-model peak LR multiplies them
  all (it is injected), so a grid over learning rates still trains as one stack."""
  factors = lr_multipliers(task.pretrained, spec.fresh_lr_multiplier)
  if spec.layer_decay < 1:
    factors = jax.tree.map(lambda f, s: f * s, factors, layer_scales(task.layer_ids, spec.layer_decay))
  return factors


def from_spec(spec, *, steps_per_epoch: int, task, learning_rate=None) -> optax.GradientTransformation:
  """The optimiser a `resolve.OptimSpec` describes for `task`: its schedule spans `spec.schedule_epochs` epochs of
  `steps_per_epoch` steps (training may stop earlier, at `spec.num_epochs`); each leaf's LR is the peak LR
  (default `spec.learning_rate`) times `multipliers` (fresh weights, layer decay); `task.frozen` leaves stay
  fixed."""
  return make_optimizer(
      spec.optimizer, spec.learning_rate if learning_rate is None else learning_rate,
      total_steps=steps_per_epoch * spec.schedule_epochs, warmup_fraction=spec.warmup_fraction, decay=spec.decay,
      momentum=spec.momentum, weight_decay=spec.weight_decay, grad_clip=spec.grad_clip,
      lr_multipliers=multipliers(spec, task), frozen=task.frozen)
