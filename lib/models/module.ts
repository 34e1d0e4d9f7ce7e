// A trainable model: the JS face of a native torch::nn::Module. Weights stay
// in native memory; parameters()/stateDict() hand out aliases, not copies.
import * as is from '../is';
import { Device, DeviceLike } from '../device';
import { Tensor } from '../tensor';

/** name -> tensor, in PyTorch's state_dict order. */
export type StateDict = Map<string, Tensor>;

export interface LoadResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

export class Module {
  /** @internal the native model */
  readonly handle: any;

  /** @internal */
  protected constructor(handle: any) {
    this.handle = handle;
  }

  /** Sets training mode (BatchNorm uses batch statistics, as nn.Module.train()). */
  train(mode = true): this {
    is.boolean('mode', mode);
    this.handle.train(mode);
    return this;
  }

  /** Evaluation mode (BatchNorm uses running statistics). */
  eval(): this {
    return this.train(false);
  }

  get training(): boolean {
    return this.handle.isTraining();
  }

  /** Moves the weights to a device, in place (optimizers made before stay valid). */
  to(device: DeviceLike): this {
    this.handle.to(Device.parse(device).toString());
    return this;
  }

  get device(): Device {
    return Device.parse(this.handle.device());
  }

  /** Keeps 4-D weights (and inputs) in channels_last memory format, faster with cuDNN and oneDNN. */
  channelsLast(enabled = true): this {
    this.handle.setChannelsLast(enabled);
    return this;
  }

  namedParameters(): [string, Tensor][] {
    return this.handle.namedParameters().map(([n, h]: [string, any]) => [n, new Tensor(h)]);
  }

  /** The parameters, optionally only those whose name starts with one of `prefixes`. */
  parameters(options: { prefixes?: string[]; trainableOnly?: boolean } = {}): Tensor[] {
    const { prefixes, trainableOnly } = options;
    return this.namedParameters()
      .filter(([n, t]) => matches(n, prefixes) && (!trainableOnly || t.requiresGrad))
      .map(([, t]) => t);
  }

  /** Parameters and buffers (running stats), as PyTorch's state_dict(): detached aliases of the live weights. */
  stateDict(): StateDict {
    return new Map(this.handle.stateDict().map(([n, h]: [string, any]) => [n, new Tensor(h)]));
  }

  /**
   * Copies values into the model (shapes must match). strict (the default) refuses missing or
   * unexpected keys, as load_state_dict(strict=True).
   */
  loadStateDict(stateDict: StateDict | Record<string, Tensor>, options: { strict?: boolean } = {}): LoadResult {
    const entries = stateDict instanceof Map ? [...stateDict.entries()] : Object.entries(stateDict);
    const r = this.handle.loadStateDict(
      entries.map(([k, t]) => [k, t instanceof Tensor ? t.handle : t]),
      options.strict ?? true,
    );
    return { missingKeys: r.missing, unexpectedKeys: r.unexpected };
  }

  /** Stops gradients for parameters under the prefixes (all when none given); returns how many. */
  freeze(prefixes: string[] = []): number {
    return this.handle.setRequiresGrad(prefixes, false);
  }

  unfreeze(prefixes: string[] = []): number {
    return this.handle.setRequiresGrad(prefixes, true);
  }

  /** Inference on the model's own native thread (no autograd graph). */
  async forward(input: Tensor): Promise<Tensor> {
    return new Tensor(await this.handle.forward(input.handle));
  }

  /** Number of parameter elements (all, or only those that require grad). */
  numParameters(options: { trainableOnly?: boolean } = {}): number {
    return this.parameters(options).reduce((n, p) => n + p.numel, 0);
  }
}

function matches(name: string, prefixes?: string[]): boolean {
  if (!prefixes || prefixes.length === 0) return true;
  return prefixes.some((p) => name === p || name.startsWith(p.endsWith('.') ? p : p + '.'));
}
