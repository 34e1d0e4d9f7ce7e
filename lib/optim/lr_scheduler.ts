// torch.optim.lr_scheduler, with torch's own (chainable) formulas so the lr
// sequence matches PyTorch's step for step, rounding included.
import * as is from '../is';
import type { Optimizer } from './optimizer';

/** Python's modulo (non-negative for a positive divisor). */
const pymod = (a: number, b: number): number => ((a % b) + b) % b;

export abstract class LRScheduler {
  readonly optimizer: Optimizer;
  /** The epoch (or step) count, -1 before the constructor's initial step, as torch. */
  lastEpoch = -1;
  readonly baseLrs: number[];
  protected stepCount = 0;
  private lastLr: number[] = [];

  protected constructor(optimizer: Optimizer, baseLrs?: number[]) {
    this.optimizer = optimizer;
    this.baseLrs = baseLrs ?? optimizer.paramGroups.map((g) => g.lr);
  }

  /** torch's _initial_step: every scheduler steps once on construction. */
  protected initialStep(): void {
    this.step();
  }

  /** The lr of each group for the current lastEpoch (torch's get_lr). */
  protected abstract getLr(): number[];

  protected groupLrs(): number[] {
    return this.optimizer.paramGroups.map((g) => g.lr);
  }

  /** Advances one epoch (or one batch for OneCycleLR) and sets the groups' lr. */
  step(): void {
    this.stepCount++;
    this.lastEpoch++;
    const lrs = this.getLr();
    lrs.forEach((lr, i) => this.optimizer.setGroupOption(i, 'lr', lr));
    this.lastLr = lrs;
  }

  /** The lr each group got at the last step (get_last_lr()). */
  getLastLr(): number[] {
    return [...this.lastLr];
  }

  stateDict(): { lastEpoch: number; stepCount: number; baseLrs: number[]; lastLr: number[] } {
    return {
      lastEpoch: this.lastEpoch,
      stepCount: this.stepCount,
      baseLrs: [...this.baseLrs],
      lastLr: [...this.lastLr],
    };
  }

  /** Restores position; the optimizer's lrs come from its own state dict. */
  loadStateDict(sd: { lastEpoch: number; stepCount: number; lastLr: number[] }): void {
    this.lastEpoch = sd.lastEpoch;
    this.stepCount = sd.stepCount;
    this.lastLr = [...sd.lastLr];
  }
}

/** Decays lr by gamma every stepSize epochs. */
export class StepLR extends LRScheduler {
  readonly stepSize: number;
  readonly gamma: number;
  constructor(optimizer: Optimizer, options: { stepSize: number; gamma?: number }) {
    super(optimizer);
    is.integer('stepSize', options?.stepSize, { min: 1 });
    this.stepSize = options.stepSize;
    this.gamma = options.gamma ?? 0.1;
    this.initialStep();
  }
  protected getLr(): number[] {
    const lrs = this.groupLrs();
    if (this.lastEpoch === 0 || this.lastEpoch % this.stepSize !== 0) return lrs;
    return lrs.map((lr) => lr * this.gamma);
  }
}

/** Decays lr by gamma at each milestone epoch. */
export class MultiStepLR extends LRScheduler {
  readonly milestones: Map<number, number>;
  readonly gamma: number;
  constructor(optimizer: Optimizer, options: { milestones: number[]; gamma?: number }) {
    super(optimizer);
    this.milestones = new Map();
    for (const m of options.milestones) this.milestones.set(m, (this.milestones.get(m) ?? 0) + 1);
    this.gamma = options.gamma ?? 0.1;
    this.initialStep();
  }
  protected getLr(): number[] {
    const lrs = this.groupLrs();
    const count = this.milestones.get(this.lastEpoch);
    if (count === undefined) return lrs;
    return lrs.map((lr) => lr * this.gamma ** count);
  }
}

/** Cosine annealing from the base lr to etaMin over tMax epochs (SGDR without restarts). */
export class CosineAnnealingLR extends LRScheduler {
  readonly tMax: number;
  readonly etaMin: number;
  constructor(optimizer: Optimizer, options: { tMax: number; etaMin?: number }) {
    super(optimizer);
    is.number('tMax', options?.tMax, { min: 0, minExclusive: true });
    this.tMax = options.tMax;
    this.etaMin = options.etaMin ?? 0;
    this.initialStep();
  }
  protected getLr(): number[] {
    const lrs = this.groupLrs();
    const { tMax, etaMin, lastEpoch } = this;
    if (lastEpoch === 0) return lrs;
    if (this.stepCount === 1 && lastEpoch > 0) {
      return this.baseLrs.map((b) => etaMin + ((b - etaMin) * (1 + Math.cos((lastEpoch * Math.PI) / tMax))) / 2);
    }
    if (pymod(lastEpoch - 1 - tMax, 2 * tMax) === 0) {
      return lrs.map((lr, i) => lr + ((this.baseLrs[i] - etaMin) * (1 - Math.cos(Math.PI / tMax))) / 2);
    }
    return lrs.map(
      (lr) =>
        ((1 + Math.cos((Math.PI * lastEpoch) / tMax)) / (1 + Math.cos((Math.PI * (lastEpoch - 1)) / tMax))) *
          (lr - etaMin) +
        etaMin,
    );
  }
}

/** Linear warmup: lr scales from startFactor to endFactor over totalIters steps. */
export class LinearLR extends LRScheduler {
  readonly startFactor: number;
  readonly endFactor: number;
  readonly totalIters: number;
  constructor(optimizer: Optimizer, options: { startFactor?: number; endFactor?: number; totalIters?: number } = {}) {
    super(optimizer);
    this.startFactor = options.startFactor ?? 1 / 3;
    this.endFactor = options.endFactor ?? 1;
    this.totalIters = options.totalIters ?? 5;
    is.number('startFactor', this.startFactor, { min: 0, max: 1, minExclusive: true });
    is.number('endFactor', this.endFactor, { min: 0, max: 1 });
    this.initialStep();
  }
  protected getLr(): number[] {
    const lrs = this.groupLrs();
    const { startFactor: s, endFactor: e, totalIters: n, lastEpoch } = this;
    if (lastEpoch === 0) return lrs.map((lr) => lr * s);
    if (lastEpoch > n) return lrs;
    return lrs.map((lr) => lr * (1 + (e - s) / (n * s + (lastEpoch - 1) * (e - s))));
  }
}

export interface OneCycleOptions {
  maxLr: number | number[];
  totalSteps?: number;
  epochs?: number;
  stepsPerEpoch?: number;
  pctStart?: number;
  annealStrategy?: 'cos' | 'linear';
  cycleMomentum?: boolean;
  baseMomentum?: number;
  maxMomentum?: number;
  divFactor?: number;
  finalDivFactor?: number;
  threePhase?: boolean;
}

interface Phase {
  endStep: number;
  startLr: 'initial' | 'max' | 'min';
  endLr: 'initial' | 'max' | 'min';
  startMomentum: 'max' | 'base';
  endMomentum: 'max' | 'base';
}

/** The 1cycle policy (Smith & Topsakal), stepped once per batch. Cycles momentum (or Adam's beta1) inversely. */
export class OneCycleLR extends LRScheduler {
  readonly totalSteps: number;
  private readonly phases: Phase[];
  private readonly anneal: (start: number, end: number, pct: number) => number;
  private readonly groups: { initial: number; max: number; min: number; maxMomentum: number; baseMomentum: number }[];
  private readonly cycleMomentum: boolean;

  constructor(optimizer: Optimizer, options: OneCycleOptions) {
    const n = optimizer.paramGroups.length;
    const maxLrs = Array.isArray(options.maxLr) ? options.maxLr : Array(n).fill(options.maxLr);
    if (maxLrs.length !== n) throw new RangeError(`expected ${n} values for maxLr, got ${maxLrs.length}`);
    const divFactor = options.divFactor ?? 25;
    const finalDivFactor = options.finalDivFactor ?? 1e4;
    super(
      optimizer,
      maxLrs.map((m) => m / divFactor),
    );
    let total: number;
    if (options.totalSteps !== undefined) {
      if (!Number.isInteger(options.totalSteps) || options.totalSteps <= 0)
        throw new RangeError('totalSteps must be a positive integer');
      total = options.totalSteps;
    } else if (options.epochs !== undefined && options.stepsPerEpoch !== undefined) {
      if (options.epochs <= 0 || options.stepsPerEpoch <= 0)
        throw new RangeError('epochs and stepsPerEpoch must be positive');
      total = options.epochs * options.stepsPerEpoch;
    } else {
      throw new TypeError('You must define either totalSteps OR (epochs AND stepsPerEpoch)');
    }
    this.totalSteps = total;
    const pct = options.pctStart ?? 0.3;
    if (!(pct >= 0 && pct <= 1)) throw new RangeError(`Expected float between 0 and 1 pctStart, but got ${pct}`);
    this.phases = options.threePhase
      ? [
          { endStep: pct * total - 1, startLr: 'initial', endLr: 'max', startMomentum: 'max', endMomentum: 'base' },
          { endStep: 2 * pct * total - 2, startLr: 'max', endLr: 'initial', startMomentum: 'base', endMomentum: 'max' },
          { endStep: total - 1, startLr: 'initial', endLr: 'min', startMomentum: 'max', endMomentum: 'max' },
        ]
      : [
          { endStep: pct * total - 1, startLr: 'initial', endLr: 'max', startMomentum: 'max', endMomentum: 'base' },
          { endStep: total - 1, startLr: 'max', endLr: 'min', startMomentum: 'base', endMomentum: 'max' },
        ];
    const strategy = options.annealStrategy ?? 'cos';
    if (strategy !== 'cos' && strategy !== 'linear')
      throw new RangeError(`annealStrategy must be 'cos' or 'linear', got ${strategy}`);
    this.anneal =
      strategy === 'cos'
        ? (start, end, p) => end + ((start - end) / 2) * (Math.cos(Math.PI * p) + 1)
        : (start, end, p) => (end - start) * p + start;
    this.cycleMomentum = options.cycleMomentum ?? true;
    const maxMomentum = options.maxMomentum ?? 0.95;
    const baseMomentum = options.baseMomentum ?? 0.85;
    this.groups = maxLrs.map((m) => ({
      initial: m / divFactor,
      max: m,
      min: m / divFactor / finalDivFactor,
      maxMomentum,
      baseMomentum,
    }));
    this.groups.forEach((g, i) => optimizer.setGroupOption(i, 'lr', g.initial));
    if (this.cycleMomentum) this.groups.forEach((g, i) => this.setMomentum(i, g.maxMomentum));
    this.initialStep();
  }

  private setMomentum(group: number, value: number): void {
    this.optimizer.setGroupOption(group, this.optimizer.kind === 'sgd' ? 'momentum' : 'beta1', value);
  }

  protected getLr(): number[] {
    const step = this.lastEpoch;
    if (step > this.totalSteps) {
      throw new RangeError(`Tried to step ${step} times. The specified number of total steps is ${this.totalSteps}`);
    }
    return this.groups.map((g, gi) => {
      let start = 0;
      for (let i = 0; i < this.phases.length; i++) {
        const phase = this.phases[i];
        if (step <= phase.endStep || i === this.phases.length - 1) {
          const pct = (step - start) / (phase.endStep - start);
          const lr = this.anneal(g[phase.startLr], g[phase.endLr], pct);
          if (this.cycleMomentum) {
            const key = (m: 'max' | 'base') => (m === 'max' ? g.maxMomentum : g.baseMomentum);
            this.setMomentum(gi, this.anneal(key(phase.startMomentum), key(phase.endMomentum), pct));
          }
          return lr;
        }
        start = phase.endStep;
      }
      throw new Error('unreachable');
    });
  }
}
