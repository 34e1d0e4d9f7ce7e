// torch.optim's Adam, AdamW and SGD over native torch::optim, with parameter
// groups and option names as in PyTorch (camelCase).
import * as is from '../is';
import { binding } from '../native';
import { Tensor } from '../tensor';

/**
 * `fused` (default true): one kernel per parameter group for the update, as torch.optim with
 * `fused=True`; `false` runs torch::optim's per-parameter loop (PyTorch's CPU default).
 */
interface StepOptions {
  fused?: boolean;
}

export interface AdamOptions extends StepOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  amsgrad?: boolean;
}

export interface SGDOptions extends StepOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

/** A parameter group: its params plus options that override the optimizer's defaults. */
export type ParamGroup<O> = { params: Tensor[] } & Partial<O>;

/** A group's current options, as param_groups[i] shows them. */
export interface GroupState {
  lr: number;
  numParams: number;
  momentum?: number;
  dampening?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  amsgrad?: boolean;
  nesterov?: boolean;
}

/** torch.optim's state_dict layout: per-parameter state by index, and the groups. */
export interface OptimizerStateDict {
  state: Map<number, Record<string, Tensor | number>>;
  param_groups: Record<string, unknown>[];
}

export type OptimizerKind = 'adam' | 'adamw' | 'sgd';

/** torch.optim's own checks on the hyper-parameters (lr >= 0, 0 <= beta < 1, ...), as argument errors. */
function checkOptions(where: string, o: Record<string, unknown>): void {
  is.options(where, o);
  const nonNegative = (k: string) => o[k] !== undefined && is.number(`${where}.${k}`, o[k], { min: 0 });
  for (const k of ['lr', 'eps', 'weightDecay', 'momentum', 'dampening']) nonNegative(k);
  for (const k of ['amsgrad', 'nesterov', 'fused']) if (o[k] !== undefined) is.boolean(`${where}.${k}`, o[k]);
  if (o.betas !== undefined) {
    if (!Array.isArray(o.betas) || o.betas.length !== 2)
      is.typeError(`${where}.betas`, 'a pair [beta1, beta2]', o.betas);
    o.betas.forEach((b, i) => {
      if (typeof b !== 'number' || !(b >= 0 && b < 1)) is.rangeError(`${where}.betas[${i}]`, 'a number in [0, 1)', b);
    });
  }
}

export abstract class Optimizer {
  /** @internal */
  readonly handle: any;
  readonly kind: OptimizerKind;

  protected constructor(kind: OptimizerKind, params: Tensor[] | ParamGroup<object>[], defaults: object) {
    const accepted = 'a non-empty Tensor[] or [{ params: Tensor[], ...options }]';
    if (!Array.isArray(params) || params.length === 0) is.typeError('params', accepted, params);
    const groups = params[0] instanceof Tensor ? [{ params: params as Tensor[] }] : (params as ParamGroup<object>[]);
    groups.forEach((g, i) => {
      if (!g || !Array.isArray(g.params) || !g.params.every((p) => p instanceof Tensor))
        is.typeError('params', accepted, params);
      if (!(params[0] instanceof Tensor)) checkOptions(`params[${i}]`, g as Record<string, unknown>);
    });
    checkOptions('options', defaults as Record<string, unknown>);
    this.kind = kind;
    this.handle = new binding.OptimizerHandle(
      kind,
      groups.map((g) => ({ ...g, params: g.params.map((p) => p.handle) })),
      defaults,
    );
  }

  /** The groups' current options (lr after any scheduler step, ...). */
  get paramGroups(): GroupState[] {
    return this.handle.groups();
  }

  /** Sets one option of one group (what LR schedulers do). */
  setGroupOption(group: number, key: 'lr' | 'momentum' | 'beta1' | 'weightDecay', value: number): void {
    this.handle.setGroupOption(group, key, value);
  }

  zeroGrad(): void {
    this.handle.zeroGrad();
  }

  /** The state in torch.optim's state_dict layout (copies of the moment tensors). */
  stateDict(): OptimizerStateDict {
    const state = new Map<number, Record<string, Tensor | number>>();
    for (const e of this.handle.state()) {
      const entry: Record<string, Tensor | number> = {};
      for (const [k, v] of Object.entries(e)) if (k !== 'index') entry[k] = typeof v === 'number' ? v : new Tensor(v);
      state.set(e.index, entry);
    }
    let index = 0;
    const param_groups = this.paramGroups.map((g) => {
      const { numParams, weightDecay, ...rest } = g;
      const params = Array.from({ length: numParams }, () => index++);
      return { ...rest, weight_decay: weightDecay, params };
    });
    return { state, param_groups };
  }

  /** Restores what stateDict() returned (or the same layout read from a PyTorch checkpoint). */
  loadStateDict(sd: OptimizerStateDict): void {
    const groups = this.paramGroups;
    if (sd.param_groups.length !== groups.length) {
      throw new Error(
        `loaded state dict has ${sd.param_groups.length} parameter groups, the optimizer has ${groups.length}`,
      );
    }
    sd.param_groups.forEach((g, i) => {
      const n = Array.isArray(g.params) ? g.params.length : -1;
      if (n !== groups[i].numParams) {
        throw new Error(`loaded state dict group ${i} has ${n} parameters, the optimizer's has ${groups[i].numParams}`);
      }
    });
    const entries = [...(sd.state instanceof Map ? sd.state.entries() : Object.entries(sd.state))].map(([k, v]) => {
      const e: Record<string, unknown> = { index: Number(k) };
      for (const [key, val] of Object.entries(v as Record<string, unknown>)) {
        if (key === 'step') e.step = val instanceof Tensor ? val.item() : Number(val);
        else e[key] = val instanceof Tensor ? val.handle : val;
      }
      return e;
    });
    this.handle.loadState(entries);
    sd.param_groups.forEach((g, i) => {
      if (typeof g.lr === 'number') this.setGroupOption(i, 'lr', g.lr);
      if (typeof g.momentum === 'number' && this.kind === 'sgd') this.setGroupOption(i, 'momentum', g.momentum);
      if (Array.isArray(g.betas) && this.kind !== 'sgd') this.setGroupOption(i, 'beta1', Number(g.betas[0]));
      if (typeof g.weight_decay === 'number') this.setGroupOption(i, 'weightDecay', g.weight_decay);
    });
  }
}

/** torch.optim.Adam (lr 1e-3, betas (0.9, 0.999), eps 1e-8, weightDecay 0 as L2, amsgrad). */
export class Adam extends Optimizer {
  constructor(params: Tensor[] | ParamGroup<AdamOptions>[], options: AdamOptions = {}) {
    super('adam', params, options);
  }
}

/** torch.optim.AdamW: decoupled weight decay (default 1e-2). */
export class AdamW extends Optimizer {
  constructor(params: Tensor[] | ParamGroup<AdamOptions>[], options: AdamOptions = {}) {
    super('adamw', params, options);
  }
}

/** torch.optim.SGD with momentum, dampening, Nesterov and weight decay. */
export class SGD extends Optimizer {
  constructor(params: Tensor[] | ParamGroup<SGDOptions>[], options: SGDOptions) {
    is.options('options', options);
    is.number('options.lr', options?.lr, { min: 0 });
    super('sgd', params, options);
  }
}
