// torch.optim's Adam, AdamW and SGD over native torch::optim, with parameter
// groups and option names as in PyTorch (camelCase).
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

export abstract class Optimizer {
  /** @internal */
  readonly handle: any;
  readonly kind: OptimizerKind;

  protected constructor(kind: OptimizerKind, params: Tensor[] | ParamGroup<object>[], defaults: object) {
    if (!Array.isArray(params) || params.length === 0) throw new TypeError('optimizer got an empty parameter list');
    const groups = params[0] instanceof Tensor ? [{ params: params as Tensor[] }] : (params as ParamGroup<object>[]);
    for (const g of groups) {
      if (!g || !Array.isArray(g.params) || !g.params.every((p) => p instanceof Tensor)) {
        throw new TypeError('params must be Tensor[] or [{ params: Tensor[], ...options }]');
      }
    }
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
      throw new Error(`loaded state dict has ${sd.param_groups.length} parameter groups, the optimizer has ${groups.length}`);
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
    if (!options || typeof options.lr !== 'number') throw new TypeError('SGD needs { lr }');
    super('sgd', params, options);
  }
}
