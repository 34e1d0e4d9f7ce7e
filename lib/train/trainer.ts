// The seed's train_model/evaluate_model as a typed Trainer: epochs of native
// train steps, validation without gradients, checkpoints every N epochs
// (atomic, PyTorch-readable) handed to a background upload queue, metrics as
// JSON lines + TensorBoard + an HTML report, and clean stops on SIGINT/SIGTERM.
import { resolvePrecision, type Amp, type Precision, type ResolvedPrecision } from './precision';
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as is from '../is';
import { Device, DeviceLike } from '../device';
import { getRngState, setRngState, version } from '../runtime';
import { Tensor } from '../tensor';
import type { Module } from '../models/module';
import type { ProcessGroup } from '../distributed';
import type { Optimizer } from '../optim/optimizer';
import { LRScheduler, OneCycleLR } from '../optim/lr_scheduler';
import { CheckpointManager, load as loadCheckpoint } from '../checkpoint';
import type { CheckpointInfo } from '../checkpoint';
import { Batch, CrossEntropyLoss, evalStep, imageSizeOf, StepResult, trainStep } from './step';
import { EpochRecord, writeReport } from './report';
import { SummaryWriter } from './tensorboard';
import { Progress } from './progress';

/** What the Trainer iterates: torchline's DataLoader, or any async iterable of batches. */
export interface Loader extends AsyncIterable<Batch> {
  readonly length?: number;
  setEpoch?(epoch: number): void;
  /** Iterate an epoch from a given batch (exact mid-epoch resume). */
  iterate?(options: { startBatch?: number }): AsyncIterable<Batch>;
}

/** Where checkpoints go once saved: storage's UploadQueue, or anything with add/flush. */
export interface UploadSink {
  add(file: string, name?: string): Promise<unknown>;
  flush(): Promise<unknown>;
}

export interface FitOptions {
  model: Module;
  optimizer: Optimizer;
  scheduler?: LRScheduler;
  /** When the scheduler steps: per 'epoch' (default) or per 'step' (default for OneCycleLR). */
  schedulerInterval?: 'epoch' | 'step';
  train: Loader;
  val?: Loader;
  epochs: number;
  device?: DeviceLike;
  /**
   * 'auto' (default): the fastest precision that keeps accuracy here (resolvePrecision: bf16 autocast +
   * channels_last on a CPU with native bf16, fp16 + loss scaling on CUDA, else fp32). `amp` overrides it.
   */
  precision?: Precision;
  amp?: Amp;
  /** Defaults to what the precision picks. */
  channelsLast?: boolean;
  lossFn?: CrossEntropyLoss;
  clipGradNorm?: number;
  /** Save a checkpoint every N epochs (default 2) and after the last one. 0 disables. */
  checkpointEvery?: number;
  checkpointDir?: string;
  /** Checkpoints to keep besides the best by validation top-1 (default 2). */
  keepLast?: number;
  upload?: UploadSink;
  /**
   * Include the optimizer state (Adam moments: 2x the weights) in checkpoints (default true, needed for an
   * exact resume). false keeps files to the weights' size; a resume then restarts the optimizer's state.
   */
  checkpointOptimizer?: boolean;
  /** A checkpoint file, or 'latest' for the newest in checkpointDir, to continue from. */
  resume?: string;
  /** TensorBoard events, metrics.jsonl and report.html go here. */
  logDir?: string;
  /** Class names for the per-class accuracy (e.g. dataset.classes). */
  classes?: string[];
  /** Stop cleanly on SIGINT/SIGTERM (default true). */
  handleSignals?: boolean;
  /** Plain config recorded inside checkpoints and the report. */
  config?: Record<string, string | number | boolean | null>;
  /** Progress output (default: stderr, a bar on a TTY). null silences it. */
  progress?: Progress | null;
  /**
   * Data-parallel run (the model wrapped with distributedDataParallel): rank 0
   * alone writes checkpoints, logs and uploads; epoch metrics are reduced over
   * ranks; a stop on any rank stops all of them at the same step.
   */
  group?: ProcessGroup;
}

export interface EvalMetrics {
  loss: number;
  top1: number;
  top5: number;
  n: number;
  perClass: { index: number; name: string; correct: number; total: number; accuracy: number }[];
}

export interface FitResult {
  history: EpochRecord[];
  checkpoints: CheckpointInfo[];
  best?: CheckpointInfo;
  interrupted: boolean;
  /** Epochs completed, counting those before a resume. */
  epochsDone: number;
  reportPath?: string;
  /** What the run trained in ('auto' resolved at the first batch on CPU; undefined when no batch ran). */
  precision?: ResolvedPrecision;
}

export interface TrainerEvents {
  /** The precision fit() trains in, once decided (at the first batch when 'auto' depends on the image size). */
  precision: [ResolvedPrecision];
  epochStart: [{ epoch: number }];
  step: [{ epoch: number; batch: number; globalStep: number; result: StepResult; lr: number }];
  epochEnd: [EpochRecord];
  validation: [EvalMetrics & { epoch: number }];
  checkpoint: [CheckpointInfo];
  upload: [{ path: string; result: unknown }];
  interrupted: [{ signal: string; epoch: number; batch: number }];
}

/** A classifier whose head does not have one output per class of the data is a usage error, not a native crash. */
function checkClassCount(model: Module, classes: string[] | undefined): void {
  const outputs = (model as Module & { numClasses?: number }).numClasses;
  if (classes && typeof outputs === 'number' && outputs !== classes.length) {
    is.rangeError(
      "the model's numClasses",
      `${classes.length}, the number of classes in the data (replaceHead(${classes.length}) or a model built for them)`,
      outputs,
    );
  }
}

export class Trainer extends EventEmitter<TrainerEvents> {
  private stopSignal: string | null = null;

  /** Asks a running fit() to stop after the current step (what SIGINT does). */
  requestStop(reason = 'requested'): void {
    this.stopSignal ??= reason;
  }

  /** Accuracy and loss over a loader, without gradients, in eval mode (restored after). */
  async evaluate(
    model: Module,
    loader: Loader,
    options: { classes?: string[]; amp?: Amp; precision?: Precision } = {},
  ): Promise<EvalMetrics> {
    checkClassCount(model, options.classes);
    const wasTraining = model.training;
    model.eval();
    let loss = 0;
    let c1 = 0;
    let c5 = 0;
    let n = 0;
    const correct = new Map<number, number>();
    const total = new Map<number, number>();
    try {
      for await (const batch of loader) {
        const r = await evalStep(model, batch, { amp: options.amp, precision: options.precision });
        const labels = batch.labels.toArray();
        labels.forEach((y, i) => {
          total.set(y, (total.get(y) ?? 0) + 1);
          if (r.predictions[i] === y) correct.set(y, (correct.get(y) ?? 0) + 1);
        });
        loss += r.loss * r.n;
        c1 += r.correct1;
        c5 += r.correct5;
        n += r.n;
        batch.images.dispose();
        batch.labels.dispose();
      }
    } finally {
      model.train(wasTraining);
    }
    const perClass = [...total.keys()]
      .sort((a, b) => a - b)
      .map((index) => {
        const t = total.get(index)!;
        const c = correct.get(index) ?? 0;
        return { index, name: options.classes?.[index] ?? String(index), correct: c, total: t, accuracy: c / t };
      });
    return { loss: n ? loss / n : NaN, top1: n ? c1 / n : NaN, top5: n ? c5 / n : NaN, n, perClass };
  }

  async fit(o: FitOptions): Promise<FitResult> {
    is.options('options', o);
    is.integer('epochs', o.epochs, { min: 1 });
    checkClassCount(o.model, o.classes);
    const device = Device.parse(o.device ?? o.model.device);
    o.model.to(device);
    // 'auto' on CPU depends on the image size: decided at the first batch unless amp says otherwise.
    let precision: ResolvedPrecision | undefined;
    const choose = (imageSize?: number) => {
      const chosen = resolvePrecision(o.precision ?? 'auto', device, { imageSize });
      precision = o.amp === undefined ? chosen : { ...chosen, amp: o.amp, reason: `amp '${o.amp}' as asked` };
      o = { ...o, amp: precision.amp };
      if (o.channelsLast ?? chosen.channelsLast) o.model.channelsLast(true);
      this.emit('precision', precision);
    };
    const bySize = (o.precision ?? 'auto') === 'auto' && o.amp === undefined && device.type === 'cpu';
    if (!bySize) choose();
    const every = o.checkpointEvery ?? 2;
    const lead = !o.group || o.group.rank === 0;
    if (!lead) o = { ...o, checkpointDir: undefined, logDir: undefined, upload: undefined, progress: null };
    const perStep = o.schedulerInterval ? o.schedulerInterval === 'step' : o.scheduler instanceof OneCycleLR;
    const progress = o.progress === undefined ? new Progress() : o.progress;
    const logDir = o.logDir;
    const writer = logDir ? new SummaryWriter(logDir) : null;
    const metricsFile = logDir ? path.join(logDir, 'metrics.jsonl') : null;
    const logLine = (rec: object) => metricsFile && fs.appendFileSync(metricsFile, JSON.stringify(rec) + '\n');
    const uploads: Promise<unknown>[] = [];
    const manager = o.checkpointDir
      ? new CheckpointManager({
          dir: o.checkpointDir,
          keepLast: o.keepLast ?? 2,
          keepBest: 1,
          onSaved: (file) => {
            if (!o.upload) return;
            const p = o.upload.add(file).then((result) => this.emit('upload', { path: file, result }));
            uploads.push(p);
            return p.then(() => undefined);
          },
        })
      : null;

    let startEpoch = 0;
    let startBatch = 0;
    let globalStep = 0;
    const history: EpochRecord[] = [];
    const steps: { step: number; loss: number }[] = [];
    if (o.resume) {
      const file = o.resume === 'latest' ? manager?.latest()?.path : o.resume;
      if (!file) {
        throw Object.assign(new Error(`resume: no checkpoint found in ${o.checkpointDir ?? '(no checkpointDir)'}`), {
          code: 'ENOENT',
        });
      }
      const ck = loadCheckpoint(file);
      this.restore(ck, o);
      startEpoch = Number(ck.get('epoch'));
      startBatch = Number(ck.get('batch') ?? 0);
      globalStep = Number(ck.get('global_step') ?? 0);
      const prior = ck.get('history');
      if (typeof prior === 'string') history.push(...(JSON.parse(prior) as EpochRecord[]));
    }

    this.stopSignal = null;
    const onSignal = (sig: NodeJS.Signals) => {
      if (this.stopSignal) {
        process.stderr.write(`\ntorchline: second ${sig}, exiting without waiting\n`);
        process.exit(130);
      }
      process.stderr.write(
        `\ntorchline: ${sig}: finishing the current step, then saving a checkpoint (again to force exit)\n`,
      );
      this.stopSignal = sig;
    };
    if (o.handleSignals ?? true) {
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
    }

    const state = (epoch: number, batch: number) =>
      new Map<string, unknown>([
        ['model', o.model.stateDict()],
        ['optimizer', o.checkpointOptimizer === false ? null : o.optimizer.stateDict()],
        ['scheduler', o.scheduler ? JSON.stringify(o.scheduler.stateDict()) : null],
        ['epoch', epoch],
        ['batch', batch],
        ['global_step', globalStep],
        ['rng_state', getRngState()],
        ['history', JSON.stringify(history)],
        ['config', JSON.stringify(o.config ?? {})],
        ['torchline', version().torchline],
      ]);
    // Written off the JS thread; no step is in flight here (each is awaited).
    const save = async (epochLabel: number, epoch: number, batch: number, metric?: number) => {
      if (!manager) return;
      const info = await manager.saveAsync(epochLabel, state(epoch, batch), metric === undefined ? {} : { metric });
      this.emit('checkpoint', info);
    };

    let interrupted = false;
    let epochsDone = startEpoch;
    let lastVal: EvalMetrics | undefined;
    try {
      for (let epoch = startEpoch; epoch < o.epochs; epoch++) {
        o.train.setEpoch?.(epoch);
        this.emit('epochStart', { epoch });
        progress?.startEpoch();
        o.model.train();
        const t0 = performance.now();
        let loss = 0;
        let c1 = 0;
        let c5 = 0;
        let n = 0;
        let batchIdx = epoch === startEpoch ? startBatch : 0;
        const batches = batchIdx > 0 ? this.batchesFrom(o.train, batchIdx) : o.train;
        for await (const batch of batches) {
          if (!precision) choose(imageSizeOf(batch.images));
          const r = await trainStep(o.model, o.optimizer, batch, {
            lossFn: o.lossFn,
            clipGradNorm: o.clipGradNorm,
            amp: o.amp,
          });
          batch.images.dispose();
          batch.labels.dispose();
          batchIdx++;
          globalStep++;
          loss += r.loss * r.n;
          c1 += r.correct1;
          c5 += r.correct5;
          n += r.n;
          const lr = o.optimizer.paramGroups[0].lr;
          steps.push({ step: globalStep, loss: r.loss });
          if (globalStep % 10 === 0) writer?.addScalars({ 'train/loss_step': r.loss, 'train/lr': lr }, globalStep);
          this.emit('step', { epoch, batch: batchIdx, globalStep, result: r, lr });
          if (perStep) o.scheduler?.step();
          progress?.update({
            epoch,
            epochs: o.epochs,
            batch: batchIdx,
            batches: o.train.length ?? 0,
            loss: r.loss,
            imgPerSec: n / ((performance.now() - t0) / 1000),
          });
          if (o.group) {
            // Every rank must leave the loop at the same step, or the others wait in a collective.
            const [stops] = await o.group.reduceNumbers([this.stopSignal ? 1 : 0]);
            if (stops > 0) this.stopSignal ??= 'another rank';
          }
          if (this.stopSignal) break;
        }
        if (this.stopSignal) {
          // Mid-epoch: save the exact position so resume continues with the next batch.
          await save(epoch + 1, epoch, batchIdx);
          this.emit('interrupted', { signal: this.stopSignal, epoch, batch: batchIdx });
          interrupted = true;
          break;
        }
        const seconds = (performance.now() - t0) / 1000;
        const lr = o.optimizer.paramGroups[0].lr;
        if (o.group) [loss, c1, c5, n] = await o.group.reduceNumbers([loss, c1, c5, n]);
        if (!perStep) o.scheduler?.step();
        const rec: EpochRecord = {
          epoch: epoch + 1,
          trainLoss: loss / n,
          trainTop1: c1 / n,
          trainTop5: c5 / n,
          lr,
          imgPerSec: n / seconds,
          seconds,
        };
        if (o.val) {
          lastVal = await this.evaluate(o.model, o.val, { classes: o.classes, amp: o.amp });
          Object.assign(rec, { valLoss: lastVal.loss, valTop1: lastVal.top1, valTop5: lastVal.top5 });
          this.emit('validation', { ...lastVal, epoch: epoch + 1 });
        }
        history.push(rec);
        epochsDone = epoch + 1;
        writer?.addScalars(
          {
            'train/loss': rec.trainLoss,
            'train/top1': rec.trainTop1,
            'val/loss': rec.valLoss ?? NaN,
            'val/top1': rec.valTop1 ?? NaN,
            'val/top5': rec.valTop5 ?? NaN,
            lr: rec.lr,
            img_per_s: rec.imgPerSec,
          },
          epoch + 1,
        );
        logLine({ type: 'epoch', ...rec });
        progress?.done(
          `epoch ${epoch + 1}/${o.epochs}: loss ${rec.trainLoss.toFixed(4)} top-1 ${(rec.trainTop1 * 100).toFixed(2)}%` +
            (rec.valTop1 !== undefined
              ? `, val loss ${rec.valLoss!.toFixed(4)} top-1 ${(rec.valTop1 * 100).toFixed(2)}%`
              : '') +
            `, ${rec.imgPerSec.toFixed(1)} img/s, ${seconds.toFixed(1)} s`,
        );
        this.emit('epochEnd', rec);
        if (every > 0 && ((epoch + 1) % every === 0 || epoch + 1 === o.epochs))
          await save(epoch + 1, epoch + 1, 0, rec.valTop1);
        if (this.stopSignal) {
          interrupted = true;
          break;
        }
      }
    } finally {
      if (o.handleSignals ?? true) {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
      writer?.close();
    }
    await manager?.idle();
    await Promise.all(uploads);
    await o.upload?.flush();
    let reportPath: string | undefined;
    if (logDir) {
      reportPath = path.join(logDir, 'report.html');
      writeReport(reportPath, {
        title: `torchline training run (${epochsDone}/${o.epochs} epochs${interrupted ? ', interrupted' : ''})`,
        epochs: history,
        steps,
        facts: { device: device.toString(), libtorch: version().libtorch, ...(o.config ?? {}) },
        perClass: lastVal?.perClass.map((c) => ({ name: c.name, accuracy: c.accuracy, total: c.total })),
      });
    }
    return {
      history,
      checkpoints: manager?.list() ?? [],
      best: manager?.best(),
      interrupted,
      epochsDone,
      reportPath,
      precision,
    };
  }

  private restore(ck: Map<string, any>, o: FitOptions): void {
    if (!(ck instanceof Map) || !ck.has('model'))
      throw new Error('resume: not a torchline training checkpoint (no "model" entry)');
    o.model.loadStateDict(ck.get('model'));
    const opt = ck.get('optimizer');
    if (opt) o.optimizer.loadStateDict(opt);
    else process.stderr.write('torchline: the checkpoint holds no optimizer state; the optimizer starts afresh\n');
    const sched = ck.get('scheduler');
    if (o.scheduler && typeof sched === 'string') o.scheduler.loadStateDict(JSON.parse(sched));
    const rng = ck.get('rng_state');
    if (rng instanceof Tensor) setRngState(rng);
  }

  private async *batchesFrom(loader: Loader, startBatch: number): AsyncIterable<Batch> {
    if (loader.iterate) {
      yield* loader.iterate({ startBatch });
      return;
    }
    let i = 0;
    for await (const b of loader) {
      if (i++ < startBatch) {
        b.images.dispose();
        b.labels.dispose();
        continue;
      }
      yield b;
    }
  }
}
