// A whole training run as one function: list and download the data
// from GCS (or use local folders), build datasets and loaders, train ResNet
// with Adam and checkpoints every N epochs, evaluate, upload checkpoints.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RESNET_DEPTHS, type ResNetDepth } from '../models/architectures';
import { CliError, inputStep } from './errors';

/** The --model names: resnet18 ... resnet152. */
export const MODEL_NAMES: string[] = RESNET_DEPTHS.map((d) => `resnet${d}`);
// The weights table only (plain data, no LibTorch): --pretrained names are checked before any work.
import '../models/resnet_weights';
import { getModelWeights, type WeightsEntry } from '../models/weights';

export interface PipelineConfig {
  bucket?: string;
  trainPrefix: string;
  valPrefix: string;
  trainDir: string;
  valDir: string;
  checkpointDir: string;
  /** GCS folder for checkpoints. */
  checkpointPrefix: string;
  epochs: number;
  batchSize: number;
  /** Decode threads; undefined: the DataLoader's default (defaultNumWorkers()). */
  workers?: number;
  lr: number;
  model: `resnet${ResNetDepth}`;
  imageSize: number;
  /** 'imagenet': RandomResizedCrop + flip; 'flip': Resize + flip; 'none': Resize only. */
  augment: 'imagenet' | 'flip' | 'none';
  mean: number[];
  std: number[];
  /**
   * Weights to start from (fc is replaced when the classes differ): 'imagenet' (the model's DEFAULT weights),
   * a weights name ('IMAGENET1K_V1', 'ResNet50_Weights.IMAGENET1K_V2'), a state_dict file, or an
   * https:// / gs:// URL (downloaded once into the torch hub cache).
   */
  pretrained?: string;
  /** Label from the file name (a regex with one group) instead of the folder. */
  labelRegex?: string;
  /** 'folder': class folders (ImageFolder); 'parquet': a Spark image / binaryFile table (ParquetImageDataset). */
  dataFormat?: 'folder' | 'parquet';
  /** Parquet: the partition column or field holding the label (default: the only partition column, or `label`). */
  labelColumn?: string;
  /** LR schedule over the epochs: none (constant), cosine annealing, or step decay (x0.1 every third of the run). */
  scheduler: 'none' | 'cosine' | 'step';
  checkpointEvery: number;
  keepLast: number;
  /** Leave the optimizer state out of checkpoints (a third of the size; resume restarts Adam's moments). */
  weightsOnly?: boolean;
  device?: string;
  amp?: 'fp16' | 'bf16';
  precision?: 'auto' | 'fp32' | 'bf16' | 'fp16';
  logDir: string;
  resume?: string;
  seed: number;
  quiet?: boolean;
}

export const DEFAULTS: PipelineConfig = {
  trainPrefix: 'train_data/',
  valPrefix: 'val_data/',
  trainDir: './data/train/',
  valDir: './data/val/',
  checkpointDir: './checkpoints/',
  checkpointPrefix: 'checkpoints',
  epochs: 10,
  batchSize: 64,
  workers: undefined,
  lr: 0.001,
  model: 'resnet50',
  imageSize: 224,
  augment: 'imagenet',
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
  scheduler: 'none',
  checkpointEvery: 2,
  keepLast: 2,
  logDir: './runs/latest',
  seed: 0,
};

/** The flags shared by `train` and `demo`. */
export const PIPELINE_FLAGS = {
  config: { type: 'string' },
  bucket: { type: 'string' },
  'train-prefix': { type: 'string' },
  'val-prefix': { type: 'string' },
  'train-dir': { type: 'string' },
  'val-dir': { type: 'string' },
  'checkpoint-dir': { type: 'string' },
  'checkpoint-prefix': { type: 'string' },
  epochs: { type: 'string' },
  'batch-size': { type: 'string' },
  workers: { type: 'string' },
  lr: { type: 'string' },
  model: { type: 'string' },
  'image-size': { type: 'string' },
  augment: { type: 'string' },
  pretrained: { type: 'string' },
  'label-regex': { type: 'string' },
  'data-format': { type: 'string' },
  'label-column': { type: 'string' },
  scheduler: { type: 'string' },
  'checkpoint-every': { type: 'string' },
  'keep-last': { type: 'string' },
  'weights-only': { type: 'boolean' },
  device: { type: 'string' },
  amp: { type: 'string' },
  precision: { type: 'string' },
  'log-dir': { type: 'string' },
  resume: { type: 'string' },
  seed: { type: 'string' },
} as const;

export const PIPELINE_USAGE = `  --config FILE            JSON file with any of the options below (camelCase keys); flags win
  --bucket NAME            GCS bucket to read the data from and upload checkpoints to
  --train-prefix P         train images under gs://BUCKET/P (default train_data/)
  --val-prefix P           validation images under gs://BUCKET/P (default val_data/)
  --train-dir DIR          train images in class sub-folders; with --bucket, downloaded here (default ./data/train/)
  --val-dir DIR            validation images, the same classes (default ./data/val/)
  --checkpoint-dir DIR     where checkpoints are saved before upload (default ./checkpoints/)
  --checkpoint-prefix P    GCS folder for checkpoints (default checkpoints)
  --epochs N               (default 10)      --batch-size N   (default 64)
  --workers N              decode threads (default: cores)   --lr X   Adam learning rate (default 0.001)
  --model NAME             ${MODEL_NAMES.join('|')} (default resnet50)
  --image-size PX          (default 224)     --augment imagenet|flip|none (default imagenet)
  --pretrained W           weights to fine-tune from: imagenet (the model's DEFAULT), a name such as
                           IMAGENET1K_V1 (see \`torchline weights\`), a .pth file, or an https:// or gs:// URL
  --label-regex RE         label from the file name's first group instead of the folder
  --data-format F          folder (class sub-folders, default) or parquet: --train-dir / --val-dir are Spark
                           image or binaryFile tables (a folder or gs://bucket/table/), streamed by row group
  --label-column C         parquet: partition column or field with the label (default: the partition column)
  --scheduler S            none|cosine|step learning-rate schedule (default none: constant lr)
  --checkpoint-every N     epochs (default 2)   --keep-last N (default 2)
  --weights-only           checkpoints without optimizer state (1/3 the size; resume restarts Adam)
  --device cpu|cuda[:i]    (default: cuda when available)
  --precision auto|fp32|bf16|fp16   (default auto: bf16 + channels_last on a CPU with native bf16,
                           fp16 on CUDA, else fp32; \`torchline doctor\` says what auto picks here)
  --log-dir DIR            metrics.jsonl, TensorBoard events, report.html (default ./runs/latest)
  --resume FILE|latest     continue a run from a checkpoint
  --seed N                 shuffling and augmentation seed (default 0)`;

function num(v: unknown, name: string, opts: { int?: boolean; min?: number } = {}): number {
  const n = Number(v);
  if (
    v === '' ||
    !Number.isFinite(n) ||
    (opts.int && !Number.isInteger(n)) ||
    (opts.min !== undefined && n < opts.min)
  ) {
    throw new CliError(
      `--${name} must be ${opts.int ? 'an integer' : 'a number'}${opts.min !== undefined ? ` >= ${opts.min}` : ''}, got '${v}'`,
    );
  }
  return n;
}

/** Defaults, then the config file, then flags. Validates everything before any work starts. */
export function resolveConfig(values: Record<string, unknown>, base: Partial<PipelineConfig> = {}): PipelineConfig {
  let fromFile: Partial<PipelineConfig> = {};
  if (typeof values.config === 'string') {
    try {
      fromFile = JSON.parse(fs.readFileSync(values.config, 'utf8'));
    } catch (err) {
      throw new CliError(`--config ${values.config}: ${(err as Error).message}`);
    }
    const known = new Set(
      Object.keys(DEFAULTS).concat([
        'bucket',
        'pretrained',
        'labelRegex',
        'device',
        'amp',
        'precision',
        'resume',
        'weightsOnly',
        'dataFormat',
        'labelColumn',
      ]),
    );
    for (const k of Object.keys(fromFile))
      if (!known.has(k)) throw new CliError(`--config ${values.config}: unknown option '${k}'`);
  }
  const c: PipelineConfig = { ...DEFAULTS, ...base, ...fromFile };
  const flag = (name: string) => values[name] as string | undefined;
  const str: [string, keyof PipelineConfig][] = [
    ['bucket', 'bucket'],
    ['train-prefix', 'trainPrefix'],
    ['val-prefix', 'valPrefix'],
    ['train-dir', 'trainDir'],
    ['val-dir', 'valDir'],
    ['checkpoint-dir', 'checkpointDir'],
    ['checkpoint-prefix', 'checkpointPrefix'],
    ['pretrained', 'pretrained'],
    ['label-regex', 'labelRegex'],
    ['device', 'device'],
    ['log-dir', 'logDir'],
    ['resume', 'resume'],
    ['data-format', 'dataFormat'],
    ['label-column', 'labelColumn'],
  ];
  for (const [f, k] of str) if (flag(f) !== undefined) (c as unknown as Record<string, unknown>)[k] = flag(f);
  if (flag('epochs') !== undefined) c.epochs = num(flag('epochs'), 'epochs', { int: true, min: 1 });
  if (flag('batch-size') !== undefined) c.batchSize = num(flag('batch-size'), 'batch-size', { int: true, min: 1 });
  if (flag('workers') !== undefined) c.workers = num(flag('workers'), 'workers', { int: true, min: 1 });
  if (flag('lr') !== undefined) c.lr = num(flag('lr'), 'lr', { min: 0 });
  if (flag('image-size') !== undefined) c.imageSize = num(flag('image-size'), 'image-size', { int: true, min: 8 });
  if (flag('checkpoint-every') !== undefined)
    c.checkpointEvery = num(flag('checkpoint-every'), 'checkpoint-every', { int: true, min: 0 });
  if (flag('keep-last') !== undefined) c.keepLast = num(flag('keep-last'), 'keep-last', { int: true, min: 1 });
  if (values['weights-only']) c.weightsOnly = true;
  if (flag('seed') !== undefined) c.seed = num(flag('seed'), 'seed', { int: true, min: 0 });
  if (flag('model') !== undefined) c.model = flag('model') as PipelineConfig['model'];
  if (flag('augment') !== undefined) c.augment = flag('augment') as PipelineConfig['augment'];
  if (flag('amp') !== undefined) c.amp = flag('amp') as PipelineConfig['amp'];
  if (flag('precision') !== undefined) c.precision = flag('precision') as PipelineConfig['precision'];
  if (c.precision !== undefined && !['auto', 'fp32', 'bf16', 'fp16'].includes(c.precision))
    throw new CliError(`--precision must be auto, fp32, bf16 or fp16, got '${c.precision}'`);
  if (flag('scheduler') !== undefined) c.scheduler = flag('scheduler') as PipelineConfig['scheduler'];
  if (!['none', 'cosine', 'step'].includes(c.scheduler))
    throw new CliError(`--scheduler must be none, cosine or step, got '${c.scheduler}'`);
  if (!MODEL_NAMES.includes(c.model)) throw new CliError(`--model must be ${MODEL_NAMES.join(', ')}, got '${c.model}'`);
  if (!['imagenet', 'flip', 'none'].includes(c.augment))
    throw new CliError(`--augment must be imagenet, flip or none, got '${c.augment}'`);
  if (c.dataFormat !== undefined && !['folder', 'parquet'].includes(c.dataFormat))
    throw new CliError(`--data-format must be folder or parquet, got '${c.dataFormat}'`);
  if (c.dataFormat === 'parquet' && c.labelRegex)
    throw new CliError('--label-regex is for class folders; with --data-format parquet use --label-column');
  if (c.amp !== undefined && !['fp16', 'bf16'].includes(c.amp))
    throw new CliError(`--amp must be fp16 or bf16, got '${c.amp}'`);
  if (c.bucket !== undefined && !/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/.test(c.bucket))
    throw new CliError(`--bucket '${c.bucket}' is not a valid bucket name`);
  if (c.resume && c.resume !== 'latest' && !fs.existsSync(c.resume))
    throw new CliError(`--resume ${c.resume}: no such file`);
  if (c.labelRegex !== undefined) {
    try {
      new RegExp(c.labelRegex);
    } catch (err) {
      throw new CliError(`--label-regex: ${(err as Error).message}`);
    }
  }
  if (c.pretrained) pretrainedSource(c.pretrained, c.model);

  return c;
}

type PretrainedSource = { kind: 'entry'; entry: WeightsEntry } | { kind: 'url' | 'file'; value: string };

/** What --pretrained names, validated: a weights entry of the model, a URL or an existing file. */
export function pretrainedSource(value: string, model: string): PretrainedSource {
  if (/^(https?|gs):\/\//i.test(value)) return { kind: 'url', value };
  const name = value.toLowerCase() === 'imagenet' ? 'DEFAULT' : value;
  if (/^([A-Za-z0-9]+_Weights\.)?[A-Z][A-Z0-9_]*$/.test(name) && !fs.existsSync(value)) {
    try {
      return { kind: 'entry', entry: getModelWeights(model).verify(name)! };
    } catch (err) {
      throw new CliError(`--pretrained ${value}: ${(err as Error).message} (see \`torchline weights\`)`);
    }
  }
  if (!fs.existsSync(value))
    throw new CliError(`--pretrained ${value}: no such file (nor a weights name such as imagenet or IMAGENET1K_V1)`);
  return { kind: 'file', value };
}

export interface PipelineResult {
  accuracy: number;
  top5: number;
  valImages: number;
  trainImages: number;
  classes: string[];
  checkpoints: string[];
  uploaded: string[];
  reportPath?: string;
  logDir: string;
  interrupted: boolean;
  seconds: number;
}

const say = (c: PipelineConfig, msg: string) => {
  if (!c.quiet) process.stderr.write(msg + '\n');
};

export async function runPipeline(c: PipelineConfig): Promise<PipelineResult> {
  const tl = await import('../index');
  const t0 = performance.now();
  const T = tl.transforms;

  const parquet = c.dataFormat === 'parquet';
  // Parquet tables are read where they are (gs:// by byte range): nothing to download.
  const tableOf = (dir: string, prefix: string) =>
    c.bucket && !/^gs:\/\//.test(dir) ? `gs://${c.bucket}/${prefix}` : dir;
  // 1-4. Data: from the bucket (partitioned listing, verified parallel download) or local folders.
  if (c.bucket && !parquet) {
    for (const [prefix, dir] of [
      [c.trainPrefix, c.trainDir],
      [c.valPrefix, c.valDir],
    ] as const) {
      const src = `gs://${c.bucket}/${prefix}`;
      // Class folders (prefix/<class>/x.jpg) are below the root: Spark reads them only with recursiveFileLookup.
      const listing = await tl.listPartitioned(src, { recursiveFileLookup: true }).catch((err: Error) => {
        throw new CliError(`cannot list ${src}: ${err.message}`);
      });
      if (listing.files.length === 0) throw new CliError(`no files under ${src}`);
      say(c, `listed ${src}: ${listing.files.length} files in ${listing.partitions.length} partitions`);
      const r = await tl.download(src, dir, { objects: listing.files.map((row) => row.object), progress: !c.quiet });
      say(
        c,
        `downloaded ${r.downloaded} files (${r.skipped} already present and verified) to ${dir} in ${(r.ms / 1000).toFixed(1)} s`,
      );
    }
  }
  for (const [name, dir] of [
    ['train', c.trainDir],
    ['validation', c.valDir],
  ]) {
    if (!parquet && !fs.existsSync(dir)) throw new CliError(`${name} folder ${dir} does not exist`);
  }

  // 5-7. Datasets, transforms, loaders.
  const norm = T.Normalize(c.mean, c.std);
  const trainT =
    c.augment === 'imagenet'
      ? [T.RandomResizedCrop(c.imageSize), T.RandomHorizontalFlip(), norm]
      : c.augment === 'flip'
        ? [T.Resize(c.imageSize), T.CenterCrop(c.imageSize), T.RandomHorizontalFlip(), norm]
        : [T.Resize(c.imageSize), T.CenterCrop(c.imageSize), norm];
  const evalT =
    c.augment === 'imagenet'
      ? [T.Resize(Math.round((c.imageSize * 256) / 224)), T.CenterCrop(c.imageSize), norm]
      : [T.Resize(c.imageSize), T.CenterCrop(c.imageSize), norm];
  const makeDataset = (dir: string, transform: unknown[], classes?: string[]) =>
    c.labelRegex
      ? new tl.ImageFiles(dir, { label: new RegExp(c.labelRegex), transform: transform as never, classes })
      : new tl.ImageFolder(dir, { transform: transform as never });
  const openTable = async (dir: string, transform: unknown[], classes?: string[]) => {
    const ds = await tl.ParquetImageDataset.open(dir, {
      transform: transform as never,
      labelColumn: c.labelColumn,
      classes,
    }).catch((err: Error) => {
      throw new CliError(`cannot read the table ${dir}: ${err.message}`);
    });
    const d = ds.describe();
    say(
      c,
      `table ${dir}: ${d.kind}, ${d.rows} rows in ${d.rowGroups} row groups of ${d.files} files, label from ${ds.labelColumn}`,
    );
    return ds;
  };
  const trainSet = parquet
    ? await openTable(tableOf(c.trainDir, c.trainPrefix), trainT)
    : await inputStep(c.trainDir, () => makeDataset(c.trainDir, trainT));
  const valSet = parquet
    ? await openTable(tableOf(c.valDir, c.valPrefix), evalT, trainSet.classes)
    : await inputStep(c.valDir, () => makeDataset(c.valDir, evalT, trainSet.classes));
  if (!c.labelRegex && valSet.classes.join('\n') !== trainSet.classes.join('\n')) {
    throw new CliError(
      `the validation classes (${valSet.classes.length}) differ from the train classes (${trainSet.classes.length})`,
    );
  }
  const train = new tl.DataLoader(trainSet, {
    batchSize: c.batchSize,
    shuffle: true,
    seed: c.seed,
    numWorkers: c.workers,
    onError: 'skip',
  });
  const val = new tl.DataLoader(valSet, {
    batchSize: c.batchSize,
    shuffle: false,
    numWorkers: c.workers,
    onError: 'skip',
  });
  say(c, `train: ${trainSet.length} images, validation: ${valSet.length}, ${trainSet.classes.length} classes`);

  // 8. Model: ResNet, optionally from torchvision weights with a new head.
  tl.manualSeed(c.seed);
  const numClasses = trainSet.classes.length;
  const device = c.device ?? tl.defaultDevice().toString();
  let model: InstanceType<typeof tl.ResNet>;
  if (c.pretrained) {
    model = new tl.ResNet(Number(c.model.slice(6)) as ResNetDepth, { numClasses: 1000 });
    const src = pretrainedSource(c.pretrained, c.model);
    const progress = !c.quiet;
    let what = c.pretrained;
    let sd: Map<string, InstanceType<typeof tl.Tensor>> | undefined;
    try {
      if (src.kind === 'entry') {
        what = String(src.entry);
        sd = await src.entry.getStateDict({ progress });
      } else if (src.kind === 'url') {
        // The official file under a mirror URL is verified against the table's hash.
        const base = src.value
          .replace(/[?#].*$/, '')
          .split('/')
          .pop();
        const entry = tl
          .listModelWeights()
          .flatMap((e) => e.entries())
          .find((w) => w.fileName === base);
        sd = entry
          ? await entry.getStateDict({ source: src.value, progress })
          : await tl.hub.loadStateDictFromUrl(src.value, { progress });
      }
    } catch (err) {
      // Offline, corrupt or missing weights: the message says what to do; no stack trace.
      if (err instanceof tl.WeightsError) throw new CliError(`--pretrained ${c.pretrained}: ${err.message}`);
      throw err;
    }
    const rep = await inputStep(`--pretrained ${c.pretrained}`, () =>
      tl.checkpoint.loadPretrained(model, sd ?? (c.pretrained as string)),
    );
    if (sd) for (const t of sd.values()) t.dispose();
    say(
      c,
      `pretrained ${what}: loaded ${rep.loaded.length} tensors, skipped ${rep.skipped.length}, missing ${rep.missing.length}`,
    );
    if (numClasses !== model.numClasses) model.replaceHead(numClasses);
  } else {
    model = new tl.ResNet(Number(c.model.slice(6)) as ResNetDepth, { numClasses });
  }
  model.to(device);

  // 9. Adam + cross-entropy, checkpoints every N epochs, uploaded as they are saved.
  const optimizer = new tl.Adam(model.parameters(), { lr: c.lr });
  const scheduler =
    c.scheduler === 'cosine'
      ? new tl.CosineAnnealingLR(optimizer, { tMax: c.epochs })
      : c.scheduler === 'step'
        ? new tl.StepLR(optimizer, { stepSize: Math.max(1, Math.ceil(c.epochs / 3)) })
        : undefined;
  const upload = c.bucket
    ? new tl.UploadQueue(`gs://${c.bucket}/${c.checkpointPrefix.replace(/\/?$/, '/')}`)
    : undefined;
  const uploaded: string[] = [];
  const trainer = new tl.Trainer();
  trainer.on('precision', (p) =>
    say(c, `precision: ${p.precision}${p.channelsLast ? ' + channels_last' : ''} (${p.reason})`),
  );
  trainer.on('checkpoint', (info) => say(c, `checkpoint: ${info.path}`));
  trainer.on('upload', ({ result }) => {
    const uri = (result as { uri?: string }).uri ?? String(result);
    uploaded.push(uri);
    say(c, `uploaded: ${uri}`);
  });
  const fit = await trainer.fit({
    model,
    optimizer,
    scheduler,
    train,
    val,
    epochs: c.epochs,
    device,
    amp: c.amp,
    precision: c.precision,
    checkpointEvery: c.checkpointEvery,
    checkpointDir: c.checkpointDir,
    keepLast: c.keepLast,
    upload,
    checkpointOptimizer: !c.weightsOnly,
    resume: c.resume,
    logDir: c.logDir,
    classes: trainSet.classes,
    progress: c.quiet ? null : undefined,
    config: {
      model: c.model,
      epochs: c.epochs,
      batchSize: c.batchSize,
      lr: c.lr,
      scheduler: c.scheduler,
      imageSize: c.imageSize,
      seed: c.seed,
    },
  });

  // 10. Evaluate.
  // In the precision training ran in ('auto' resolved at its first batch).
  const ev = await trainer.evaluate(model, val, {
    classes: trainSet.classes,
    amp: c.amp ?? fit.precision?.amp,
    precision: c.precision ?? 'auto',
  });
  fs.writeFileSync(path.join(c.logDir, 'eval.json'), JSON.stringify(ev, null, 2));
  return {
    accuracy: ev.top1,
    top5: ev.top5,
    valImages: ev.n,
    trainImages: trainSet.length,
    classes: trainSet.classes,
    checkpoints: fit.checkpoints.map((k) => k.path),
    uploaded,
    reportPath: fit.reportPath,
    logDir: c.logDir,
    interrupted: fit.interrupted,
    seconds: (performance.now() - t0) / 1000,
  };
}
