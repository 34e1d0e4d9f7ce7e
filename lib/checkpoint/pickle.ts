// A restricted unpickler and a small pickler for PyTorch checkpoints.
//
// Python's pickle is a program, not a data format: GLOBAL + REDUCE call any
// function by name (os.system, eval, ...). This unpickler is an interpreter
// for the data-building part only. A GLOBAL is looked up in an allowlist of
// what tensors, storages and containers need; anything else is refused at
// once with UnsafePickleError naming it, and nothing from the file is ever
// called or imported. Opcodes that instantiate arbitrary classes (INST, OBJ,
// NEWOBJ on non-allowlisted classes) or use the extension registry are
// refused too. Written in TypeScript so hostile input cannot corrupt memory.
//
// Mapping of Python values: int -> number (bigint beyond 2^53), float ->
// number, str -> string, bytes -> Buffer, None -> null, bool -> boolean,
// list -> array, tuple -> frozen array, set/frozenset -> Set,
// collections.OrderedDict -> Map, dict -> plain object when every key is a
// string, else Map.
import { CheckpointError, UnsafePickleError } from './errors';

// ---- opcodes ------------------------------------------------------------------
const OP = {
  MARK: 0x28,
  STOP: 0x2e,
  POP: 0x30,
  POP_MARK: 0x31,
  DUP: 0x32,
  FLOAT: 0x46,
  INT: 0x49,
  BININT: 0x4a,
  BININT1: 0x4b,
  LONG: 0x4c,
  BININT2: 0x4d,
  NONE: 0x4e,
  PERSID: 0x50,
  BINPERSID: 0x51,
  REDUCE: 0x52,
  STRING: 0x53,
  BINSTRING: 0x54,
  SHORT_BINSTRING: 0x55,
  UNICODE: 0x56,
  BINUNICODE: 0x58,
  APPEND: 0x61,
  BUILD: 0x62,
  GLOBAL: 0x63,
  DICT: 0x64,
  EMPTY_DICT: 0x7d,
  APPENDS: 0x65,
  GET: 0x67,
  BINGET: 0x68,
  INST: 0x69,
  LONG_BINGET: 0x6a,
  LIST: 0x6c,
  EMPTY_LIST: 0x5d,
  OBJ: 0x6f,
  PUT: 0x70,
  BINPUT: 0x71,
  LONG_BINPUT: 0x72,
  SETITEM: 0x73,
  TUPLE: 0x74,
  EMPTY_TUPLE: 0x29,
  SETITEMS: 0x75,
  BINFLOAT: 0x47,
  PROTO: 0x80,
  NEWOBJ: 0x81,
  EXT1: 0x82,
  EXT2: 0x83,
  EXT4: 0x84,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  LONG1: 0x8a,
  LONG4: 0x8b,
  BINBYTES: 0x42,
  SHORT_BINBYTES: 0x43,
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  BINBYTES8: 0x8e,
  EMPTY_SET: 0x8f,
  ADDITEMS: 0x90,
  FROZENSET: 0x91,
  NEWOBJ_EX: 0x92,
  STACK_GLOBAL: 0x93,
  MEMOIZE: 0x94,
  FRAME: 0x95,
  BYTEARRAY8: 0x96,
  NEXT_BUFFER: 0x97,
  READONLY_BUFFER: 0x98,
} as const;

const OP_NAME = new Map<number, string>(Object.entries(OP).map(([k, v]) => [v, k]));

// ---- globals ------------------------------------------------------------------

/** An allowlisted Python global: something REDUCE may call, or a marker (storage types). */
export interface PyGlobal {
  readonly module: string;
  readonly name: string;
  /** Present when REDUCE may call it. */
  readonly call?: (args: unknown[]) => unknown;
}

/** What the unpickler gets from the caller: the allowlist and persistent ids. */
export interface UnpicklerOptions {
  globals: ReadonlyMap<string, PyGlobal>;
  persistentLoad(pid: unknown): unknown;
  /** Name in error messages. */
  name?: string;
  /** Where the pickle starts in `data` (legacy files hold several in a row). */
  start?: number;
}

/** Python state set by BUILD on an OrderedDict (e.g. a state_dict's `_metadata`). */
export const PY_STATE: unique symbol = Symbol.for('torchline.pyState');

/** Tuples come out as frozen arrays; this says whether an array was a tuple. */
export function isTuple(v: unknown): v is readonly unknown[] {
  return Array.isArray(v) && Object.isFrozen(v);
}

const MAX_DEPTH = 1000;

export class Unpickler {
  private readonly data: Buffer;
  private pos = 0;
  private stack: unknown[] = [];
  private readonly metastack: unknown[][] = [];
  private readonly memo = new Map<number, unknown>();
  private readonly plainDicts = new WeakSet<Map<unknown, unknown>>();
  private readonly tuples = new WeakSet<unknown[]>();
  private readonly opts: UnpicklerOptions;

  constructor(data: Buffer, options: UnpicklerOptions) {
    this.data = data;
    this.opts = options;
    this.pos = options.start ?? 0;
  }

  /** The byte after the last one read (after load(): after STOP). */
  get position(): number {
    return this.pos;
  }

  private fail(msg: string): never {
    throw new CheckpointError(`${this.opts.name ?? 'pickle'}: ${msg} (at byte ${this.pos})`);
  }

  private need(n: number): number {
    if (n < 0 || this.pos + n > this.data.length) this.fail(`truncated pickle (needs ${n} bytes at ${this.pos})`);
    const p = this.pos;
    this.pos += n;
    return p;
  }
  private u8(): number {
    return this.data[this.need(1)];
  }
  private u16(): number {
    return this.data.readUInt16LE(this.need(2));
  }
  private u32(): number {
    return this.data.readUInt32LE(this.need(4));
  }
  private u64(): number {
    const v = this.data.readBigUInt64LE(this.need(8));
    if (v > BigInt(this.data.length)) this.fail(`length ${v} exceeds the pickle`);
    return Number(v);
  }
  private bytes(n: number): Buffer {
    const p = this.need(n);
    return this.data.subarray(p, p + n);
  }
  private line(): string {
    const end = this.data.indexOf(0x0a, this.pos);
    if (end < 0) this.fail('truncated pickle (unterminated text line)');
    const s = this.data.toString('latin1', this.pos, end);
    this.pos = end + 1;
    return s;
  }

  private pop(): unknown {
    if (this.stack.length === 0) this.fail('stack underflow (corrupt pickle)');
    return this.stack.pop();
  }
  private top(): unknown {
    if (this.stack.length === 0) this.fail('stack underflow (corrupt pickle)');
    return this.stack[this.stack.length - 1];
  }
  private popMark(): unknown[] {
    const items = this.stack;
    const prev = this.metastack.pop();
    if (!prev) this.fail('MARK missing (corrupt pickle)');
    this.stack = prev;
    return items;
  }
  private tuple(items: unknown[]): unknown[] {
    this.tuples.add(items);
    return items;
  }
  private dict(): Map<unknown, unknown> {
    const m = new Map();
    this.plainDicts.add(m);
    return m;
  }
  private setItem(target: unknown, k: unknown, v: unknown): void {
    if (!(target instanceof Map)) this.fail(`SETITEM on a ${describe(target)}, not a dict`);
    if (Array.isArray(k) && !this.tuples.has(k)) this.fail('unhashable dict key (list)');
    target.set(k, v);
  }
  private appendTo(target: unknown, items: unknown[]): void {
    if (!Array.isArray(target) || this.tuples.has(target)) this.fail(`APPEND on a ${describe(target)}, not a list`);
    for (const it of items) target.push(it);
  }

  private global(module: string, name: string): PyGlobal {
    const g = this.opts.globals.get(`${module}.${name}`);
    if (!g) throw new UnsafePickleError(`${module}.${name}`);
    return g;
  }

  private int(text: string): unknown {
    const t = text.trim().replace(/L$/, '');
    if (!/^[-+]?\d+$/.test(t)) this.fail(`bad integer literal '${text}'`);
    return normInt(BigInt(t));
  }

  load(): unknown {
    const d = this.data;
    for (;;) {
      if (this.pos >= d.length) this.fail('truncated pickle (no STOP)');
      const op = d[this.pos++];
      switch (op) {
        case OP.PROTO: {
          const v = this.u8();
          if (v > 5) this.fail(`pickle protocol ${v} is not supported`);
          break;
        }
        case OP.FRAME:
          this.u64();
          break; // the whole pickle is in memory already
        case OP.STOP: {
          const v = this.pop();
          return v;
        }
        case OP.MARK:
          this.metastack.push(this.stack);
          this.stack = [];
          break;
        case OP.POP:
          this.pop();
          break;
        case OP.POP_MARK:
          this.popMark();
          break;
        case OP.DUP:
          this.stack.push(this.top());
          break;
        // numbers
        case OP.INT: {
          const t = this.line();
          this.stack.push(t === '00' ? false : t === '01' ? true : this.int(t));
          break;
        }
        case OP.LONG:
          this.stack.push(this.int(this.line()));
          break;
        case OP.BININT:
          this.stack.push(d.readInt32LE(this.need(4)));
          break;
        case OP.BININT1:
          this.stack.push(this.u8());
          break;
        case OP.BININT2:
          this.stack.push(this.u16());
          break;
        case OP.LONG1:
          this.stack.push(decodeLong(this.bytes(this.u8())));
          break;
        case OP.LONG4: {
          const n = d.readInt32LE(this.need(4));
          if (n < 0) this.fail('negative LONG4 length');
          if (n > 1024) this.fail('integer literal too long');
          this.stack.push(decodeLong(this.bytes(n)));
          break;
        }
        case OP.FLOAT: {
          const t = this.line().trim();
          const v = Number(t);
          if (Number.isNaN(v) && !/^[-+]?nan$/i.test(t)) this.fail(`bad float literal '${t}'`);
          this.stack.push(v);
          break;
        }
        case OP.BINFLOAT:
          this.stack.push(d.readDoubleBE(this.need(8)));
          break;
        // strings and bytes
        case OP.BINUNICODE: {
          const n = this.u32();
          this.stack.push(this.bytes(n).toString('utf8'));
          break;
        }
        case OP.SHORT_BINUNICODE: {
          const n = this.u8();
          this.stack.push(this.bytes(n).toString('utf8'));
          break;
        }
        case OP.BINUNICODE8: {
          const n = this.u64();
          this.stack.push(this.bytes(n).toString('utf8'));
          break;
        }
        // Python 2 str: torch.load decodes them as utf-8 by default
        case OP.SHORT_BINSTRING: {
          const n = this.u8();
          this.stack.push(this.bytes(n).toString('utf8'));
          break;
        }
        case OP.BINSTRING: {
          const n = d.readInt32LE(this.need(4));
          this.stack.push(this.bytes(n).toString('utf8'));
          break;
        }
        case OP.BINBYTES: {
          const n = this.u32();
          this.stack.push(Buffer.from(this.bytes(n)));
          break;
        }
        case OP.SHORT_BINBYTES: {
          const n = this.u8();
          this.stack.push(Buffer.from(this.bytes(n)));
          break;
        }
        case OP.BINBYTES8:
        case OP.BYTEARRAY8: {
          const n = this.u64();
          this.stack.push(Buffer.from(this.bytes(n)));
          break;
        }
        case OP.NONE:
          this.stack.push(null);
          break;
        case OP.NEWTRUE:
          this.stack.push(true);
          break;
        case OP.NEWFALSE:
          this.stack.push(false);
          break;
        // containers
        case OP.EMPTY_TUPLE:
          this.stack.push(this.tuple([]));
          break;
        case OP.TUPLE: {
          const items = this.popMark();
          this.stack.push(this.tuple(items));
          break;
        }
        case OP.TUPLE1: {
          const a = this.pop();
          this.stack.push(this.tuple([a]));
          break;
        }
        case OP.TUPLE2: {
          const b = this.pop();
          const a = this.pop();
          this.stack.push(this.tuple([a, b]));
          break;
        }
        case OP.TUPLE3: {
          const c = this.pop();
          const b = this.pop();
          const a = this.pop();
          this.stack.push(this.tuple([a, b, c]));
          break;
        }
        case OP.EMPTY_LIST:
          this.stack.push([]);
          break;
        case OP.LIST: {
          const items = this.popMark();
          this.stack.push(items);
          break;
        }
        case OP.APPEND: {
          const v = this.pop();
          this.appendTo(this.top(), [v]);
          break;
        }
        case OP.APPENDS: {
          const items = this.popMark();
          this.appendTo(this.top(), items);
          break;
        }
        case OP.EMPTY_DICT:
          this.stack.push(this.dict());
          break;
        case OP.DICT: {
          const items = this.popMark();
          if (items.length % 2) this.fail('DICT with an odd number of items');
          const m = this.dict();
          for (let i = 0; i < items.length; i += 2) this.setItem(m, items[i], items[i + 1]);
          this.stack.push(m);
          break;
        }
        case OP.SETITEM: {
          const v = this.pop();
          const k = this.pop();
          this.setItem(this.top(), k, v);
          break;
        }
        case OP.SETITEMS: {
          const items = this.popMark();
          if (items.length % 2) this.fail('SETITEMS with an odd number of items');
          const target = this.top();
          for (let i = 0; i < items.length; i += 2) this.setItem(target, items[i], items[i + 1]);
          break;
        }
        case OP.EMPTY_SET:
          this.stack.push(new Set());
          break;
        case OP.ADDITEMS: {
          const items = this.popMark();
          const target = this.top();
          if (!(target instanceof Set)) this.fail(`ADDITEMS on a ${describe(target)}, not a set`);
          for (const it of items) target.add(it);
          break;
        }
        case OP.FROZENSET: {
          const items = this.popMark();
          this.stack.push(new Set(items));
          break;
        }
        // memo
        case OP.PUT:
          this.memo.set(Number(this.int(this.line())), this.top());
          break;
        case OP.BINPUT:
          this.memo.set(this.u8(), this.top());
          break;
        case OP.LONG_BINPUT:
          this.memo.set(this.u32(), this.top());
          break;
        case OP.MEMOIZE:
          this.memo.set(this.memo.size, this.top());
          break;
        case OP.GET:
          this.stack.push(this.memoGet(Number(this.int(this.line()))));
          break;
        case OP.BINGET:
          this.stack.push(this.memoGet(this.u8()));
          break;
        case OP.LONG_BINGET:
          this.stack.push(this.memoGet(this.u32()));
          break;
        // the risky part: names and calls, through the allowlist only
        case OP.GLOBAL: {
          const module = this.line();
          const name = this.line();
          this.stack.push(this.global(module, name));
          break;
        }
        case OP.STACK_GLOBAL: {
          const name = this.pop();
          const module = this.pop();
          if (typeof module !== 'string' || typeof name !== 'string') this.fail('STACK_GLOBAL needs two strings');
          this.stack.push(this.global(module, name));
          break;
        }
        case OP.REDUCE: {
          const args = this.pop();
          const fn = this.pop();
          if (!isGlobal(fn) || !fn.call)
            this.fail(
              `REDUCE on ${isGlobal(fn) ? `${fn.module}.${fn.name}` : describe(fn)}, which is not callable here`,
            );
          if (!Array.isArray(args)) this.fail('REDUCE arguments are not a tuple');
          this.stack.push(fn.call(args));
          break;
        }
        case OP.NEWOBJ: {
          const args = this.pop();
          const cls = this.pop();
          if (!isGlobal(cls) || !cls.call || !Array.isArray(args))
            this.fail(`NEWOBJ on ${isGlobal(cls) ? `${cls.module}.${cls.name}` : describe(cls)} is not allowed`);
          this.stack.push(cls.call(args));
          break;
        }
        case OP.BUILD: {
          const state = this.pop();
          const inst = this.top();
          if (inst instanceof Map && !this.plainDicts.has(inst)) {
            // OrderedDict.__dict__ (a state_dict's _metadata): kept, not applied
            Object.defineProperty(inst, PY_STATE, {
              value: state,
              enumerable: false,
              configurable: true,
              writable: true,
            });
          } else if (isTensorLike(inst)) {
            // Parameter state (torch 2.x): nothing torchline needs
          } else {
            this.fail(`BUILD on a ${describe(inst)} is not allowed`);
          }
          break;
        }
        case OP.PERSID:
          this.stack.push(this.opts.persistentLoad(this.line()));
          break;
        case OP.BINPERSID: {
          const pid = this.pop();
          this.stack.push(this.opts.persistentLoad(pid));
          break;
        }
        default: {
          const name = OP_NAME.get(op);
          if (name) this.fail(`the pickle opcode ${name} is not allowed (it can create arbitrary objects)`);
          this.fail(`unknown pickle opcode 0x${op.toString(16)} at byte ${this.pos - 1} (corrupt pickle?)`);
        }
      }
    }
  }

  private memoGet(i: number): unknown {
    if (!this.memo.has(i)) this.fail(`memo key ${i} is missing (corrupt pickle)`);
    return this.memo.get(i);
  }

  /**
   * Replaces placeholders (via `replace`), freezes tuples and turns plain
   * dicts with string keys into objects, keeping shared references shared.
   */
  finalize(root: unknown, replace: (v: unknown) => unknown): unknown {
    const done = new Map<object, unknown>();
    const visit = (v: unknown, depth: number): unknown => {
      if (v === null || typeof v !== 'object') return v;
      const r = replace(v);
      if (r !== v) return r;
      if (done.has(v)) return done.get(v);
      if (depth > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH} levels`);
      if (Array.isArray(v)) {
        done.set(v, v);
        for (let i = 0; i < v.length; i++) v[i] = visit(v[i], depth + 1);
        if (this.tuples.has(v)) Object.freeze(v);
        return v;
      }
      if (v instanceof Map) {
        const plain = this.plainDicts.has(v) && [...v.keys()].every((k) => typeof k === 'string');
        if (plain) {
          const o: Record<string, unknown> = {};
          done.set(v, o);
          for (const [k, x] of v)
            Object.defineProperty(o, k as string, {
              value: visit(x, depth + 1),
              enumerable: true,
              writable: true,
              configurable: true,
            });
          return o;
        }
        done.set(v, v);
        const entries = [...v];
        v.clear();
        for (const [k, x] of entries) v.set(visit(k, depth + 1), visit(x, depth + 1));
        if (Object.prototype.hasOwnProperty.call(v, PY_STATE))
          (v as any)[PY_STATE] = visit((v as any)[PY_STATE], depth + 1);
        return v;
      }
      if (v instanceof Set) {
        done.set(v, v);
        const items = [...v];
        v.clear();
        for (const x of items) v.add(visit(x, depth + 1));
        return v;
      }
      return v;
    };
    return visit(root, 0);
  }
}

function isGlobal(v: unknown): v is PyGlobal {
  return typeof v === 'object' && v !== null && 'module' in v && 'name' in v && GLOBAL_OBJECTS.has(v as PyGlobal);
}
const GLOBAL_OBJECTS = new WeakSet<PyGlobal>();

/** Makes an allowlist entry (only objects made here count as globals). */
export function pyGlobal(module: string, name: string, call?: (args: unknown[]) => unknown): PyGlobal {
  const g: PyGlobal = Object.freeze({ module, name, call });
  GLOBAL_OBJECTS.add(g);
  return g;
}

/** Marks objects BUILD may target besides OrderedDicts (tensor placeholders). */
const TENSOR_LIKE = new WeakSet<object>();
export function markTensorLike(o: object): void {
  TENSOR_LIKE.add(o);
}
function isTensorLike(v: unknown): boolean {
  return typeof v === 'object' && v !== null && TENSOR_LIKE.has(v);
}

function describe(v: unknown): string {
  if (v === null) return 'None';
  if (Array.isArray(v)) return 'list/tuple';
  if (v instanceof Map) return 'dict';
  if (isGlobal(v)) return `${v.module}.${v.name}`;
  return typeof v;
}

function normInt(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function decodeLong(b: Buffer): number | bigint {
  if (b.length === 0) return 0;
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
  return normInt(v);
}

// ---- pickler ------------------------------------------------------------------

/** How a tensor-like value is written: storage persistent id + view. */
export interface PickledTensor {
  storageType: string; // e.g. 'FloatStorage' (in module torch)
  key: string;
  location: string;
  numel: number;
  offset: number;
  size: readonly number[];
  stride: readonly number[];
}

export interface PicklerOptions {
  /** Returns the storage description of a tensor value, or undefined if `v` is no tensor. */
  tensor(v: unknown): PickledTensor | undefined;
}

/**
 * Writes protocol 2 using only the opcodes and globals that torch.load's
 * weights_only unpickler accepts. One exception, unavoidable: floats are
 * BINFLOAT, which torch 1.13's weights_only unpickler lacks (torch >= 2.0
 * has it), so a value holding Python floats needs weights_only=False there.
 *
 * JS -> Python: Map -> OrderedDict, plain object -> dict, array -> list,
 * frozen array -> tuple, integer number -> int, other number -> float,
 * bigint -> int, string -> str, boolean -> bool, null/undefined -> None.
 */
export class Pickler {
  private readonly out: Buffer[] = [];
  private cur = Buffer.allocUnsafe(1 << 16);
  private n = 0;
  private readonly memo = new Map<object, number>();
  private readonly opts: PicklerOptions;
  private readonly stackPath: string[] = [];

  constructor(options: PicklerOptions) {
    this.opts = options;
  }

  private ensure(k: number): void {
    if (this.n + k <= this.cur.length) return;
    this.out.push(this.cur.subarray(0, this.n));
    this.cur = Buffer.allocUnsafe(Math.max(1 << 16, k));
    this.n = 0;
  }
  private op(b: number): void {
    this.ensure(1);
    this.cur[this.n++] = b;
  }
  private raw(b: Buffer): void {
    this.ensure(b.length);
    b.copy(this.cur, this.n);
    this.n += b.length;
  }

  private int(v: number | bigint): void {
    if (typeof v === 'number' && v >= 0 && v < 256) {
      this.op(OP.BININT1);
      this.op(v);
      return;
    }
    if (typeof v === 'number' && v >= 0 && v < 65536) {
      this.ensure(3);
      this.cur[this.n++] = OP.BININT2;
      this.cur.writeUInt16LE(v, this.n);
      this.n += 2;
      return;
    }
    if (typeof v === 'number' && v >= -(2 ** 31) && v < 2 ** 31) {
      this.ensure(5);
      this.cur[this.n++] = OP.BININT;
      this.cur.writeInt32LE(v, this.n);
      this.n += 4;
      return;
    }
    let b = BigInt(v);
    const bytes: number[] = [];
    // minimal two's complement, little-endian
    for (;;) {
      const byte = Number(b & 0xffn);
      bytes.push(byte);
      b >>= 8n;
      if ((b === 0n && !(byte & 0x80)) || (b === -1n && byte & 0x80)) break;
    }
    this.op(OP.LONG1);
    this.op(bytes.length);
    this.raw(Buffer.from(bytes));
  }
  private float(v: number): void {
    this.ensure(9);
    this.cur[this.n++] = OP.BINFLOAT;
    this.cur.writeDoubleBE(v, this.n);
    this.n += 8;
  }
  private str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.ensure(5);
    this.cur[this.n++] = OP.BINUNICODE;
    this.cur.writeUInt32LE(b.length, this.n);
    this.n += 4;
    this.raw(b);
  }
  private global(module: string, name: string): void {
    this.op(OP.GLOBAL);
    this.raw(Buffer.from(`${module}\n${name}\n`, 'latin1'));
  }
  private put(o: object): void {
    const i = this.memo.size;
    this.memo.set(o, i);
    if (i < 256) {
      this.op(OP.BINPUT);
      this.op(i);
    } else {
      this.ensure(5);
      this.cur[this.n++] = OP.LONG_BINPUT;
      this.cur.writeUInt32LE(i, this.n);
      this.n += 4;
    }
  }
  private get(i: number): void {
    if (i < 256) {
      this.op(OP.BINGET);
      this.op(i);
    } else {
      this.ensure(5);
      this.cur[this.n++] = OP.LONG_BINGET;
      this.cur.writeUInt32LE(i, this.n);
      this.n += 4;
    }
  }
  private intTuple(xs: readonly number[]): void {
    if (xs.length === 0) {
      this.op(OP.EMPTY_TUPLE);
      return;
    }
    if (xs.length > 3) this.op(OP.MARK);
    for (const x of xs) this.int(x);
    this.op(xs.length === 1 ? OP.TUPLE1 : xs.length === 2 ? OP.TUPLE2 : xs.length === 3 ? OP.TUPLE3 : OP.TUPLE);
  }
  private emptyOrderedDict(): void {
    this.global('collections', 'OrderedDict');
    this.op(OP.EMPTY_TUPLE);
    this.op(OP.REDUCE);
  }

  private fail(msg: string): never {
    const where = this.stackPath.length ? ` at ${this.stackPath.join('')}` : '';
    throw new TypeError(`cannot save${where}: ${msg}`);
  }

  private value(v: unknown, depth: number): void {
    if (depth > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH} levels (a cycle through a tuple?)`);
    if (v === null || v === undefined) return this.op(OP.NONE);
    switch (typeof v) {
      case 'boolean':
        return this.op(v ? OP.NEWTRUE : OP.NEWFALSE);
      case 'number':
        return Number.isSafeInteger(v) && !Object.is(v, -0) ? this.int(v) : this.float(v);
      case 'bigint':
        return this.int(v);
      case 'string':
        return this.str(v);
      case 'object':
        break;
      default:
        this.fail(`a ${typeof v} has no Python equivalent`);
    }
    const obj = v as object;
    const seen = this.memo.get(obj);
    if (seen !== undefined) return this.get(seen);
    const t = this.opts.tensor(obj);
    if (t) return this.tensor(t, obj);
    if (Array.isArray(obj)) {
      if (Object.isFrozen(obj)) {
        // tuple: cannot be memoized before its items exist; cycles through it hit the depth limit
        this.op(OP.MARK);
        obj.forEach((x, i) => this.child(`[${i}]`, x, depth));
        this.op(OP.TUPLE);
        this.put(obj);
        return;
      }
      this.op(OP.EMPTY_LIST);
      this.put(obj);
      for (let i = 0; i < obj.length; i += 1000) {
        this.op(OP.MARK);
        for (let j = i; j < Math.min(obj.length, i + 1000); j++) this.child(`[${j}]`, obj[j], depth);
        this.op(OP.APPENDS);
      }
      return;
    }
    if (obj instanceof Map) {
      this.emptyOrderedDict();
      this.put(obj);
      this.items([...obj], depth);
      return;
    }
    if (ArrayBuffer.isView(obj))
      this.fail('a TypedArray/Buffer cannot be saved as such; wrap it in a Tensor (Tensor.from)');
    const proto = Object.getPrototypeOf(obj);
    if (proto !== Object.prototype && proto !== null)
      this.fail(
        `a ${proto?.constructor?.name ?? 'class'} instance has no Python equivalent; use plain objects, Maps, arrays and Tensors`,
      );
    this.op(OP.EMPTY_DICT);
    this.put(obj);
    this.items(Object.entries(obj), depth);
  }

  private items(entries: [unknown, unknown][], depth: number): void {
    for (let i = 0; i < entries.length; i += 1000) {
      this.op(OP.MARK);
      for (let j = i; j < Math.min(entries.length, i + 1000); j++) {
        const [k, x] = entries[j];
        if (k !== null && typeof k === 'object' && !(Array.isArray(k) && Object.isFrozen(k)))
          this.fail('dict keys must be strings, numbers, booleans or tuples');
        this.value(k, depth + 1);
        this.child(typeof k === 'string' ? `.${k}` : `[${String(k)}]`, x, depth);
      }
      this.op(OP.SETITEMS);
    }
  }

  private child(label: string, v: unknown, depth: number): void {
    this.stackPath.push(label);
    this.value(v, depth + 1);
    this.stackPath.pop();
  }

  private tensor(t: PickledTensor, obj: object): void {
    this.global('torch._utils', '_rebuild_tensor_v2');
    this.op(OP.MARK);
    this.op(OP.MARK);
    this.str('storage');
    this.global('torch', t.storageType);
    this.str(t.key);
    this.str(t.location);
    this.int(t.numel);
    this.op(OP.TUPLE);
    this.op(OP.BINPERSID);
    this.int(t.offset);
    this.intTuple(t.size);
    this.intTuple(t.stride);
    this.op(OP.NEWFALSE);
    this.emptyOrderedDict();
    this.op(OP.TUPLE);
    this.op(OP.REDUCE);
    this.put(obj);
  }

  dump(v: unknown): Buffer {
    this.op(OP.PROTO);
    this.op(2);
    this.value(v, 0);
    this.op(OP.STOP);
    this.out.push(this.cur.subarray(0, this.n));
    return Buffer.concat(this.out);
  }
}
