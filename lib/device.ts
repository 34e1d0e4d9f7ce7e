/** A device, as torch.device: `"cpu"`, `"cuda"` (the current GPU) or `"cuda:<index>"`. */
export type DeviceType = 'cpu' | 'cuda';
export type DeviceLike = Device | string;

const DEVICE_RE = /^(cpu|cuda)(?::(\d+))?$/;

export class Device {
  readonly type: DeviceType;
  /** The GPU index, or null for "the current one" (and always null on CPU). */
  readonly index: number | null;

  constructor(type: DeviceType, index: number | null = null) {
    if (type !== 'cpu' && type !== 'cuda') throw new RangeError(`unknown device type '${String(type)}'`);
    if (index !== null && (!Number.isInteger(index) || index < 0)) {
      throw new RangeError(`device index must be a non-negative integer, got ${index}`);
    }
    if (type === 'cpu' && index !== null && index !== 0) throw new RangeError('cpu has no device index other than 0');
    this.type = type;
    this.index = type === 'cpu' ? null : index;
  }

  /** Parses "cpu", "cuda", "cuda:1" (case and surrounding spaces are not forgiven, as in torch). */
  static parse(spec: DeviceLike): Device {
    if (spec instanceof Device) return spec;
    if (typeof spec !== 'string') throw new TypeError(`device must be a string or Device, got ${typeof spec}`);
    const m = DEVICE_RE.exec(spec);
    if (!m) throw new RangeError(`invalid device '${spec}': expected "cpu", "cuda" or "cuda:<index>"`);
    return new Device(m[1] as DeviceType, m[2] === undefined ? null : Number(m[2]));
  }

  get isCuda(): boolean {
    return this.type === 'cuda';
  }

  equals(other: DeviceLike): boolean {
    const o = Device.parse(other);
    return o.type === this.type && o.index === this.index;
  }

  toString(): string {
    return this.index === null ? this.type : `${this.type}:${this.index}`;
  }

  toJSON(): string {
    return this.toString();
  }
}
