// Argument checks for public functions, in one place so the same fault always
// gives the same error: a TypeError (code ERR_INVALID_ARG_TYPE) for a value of
// the wrong type, a RangeError (code ERR_OUT_OF_RANGE) for a value of the right
// type outside what is accepted. Messages name the parameter, what it accepts
// and what it got: "numClasses must be a positive integer, got -1".

export const ARGUMENT_ERROR_CODES: ReadonlySet<string> = new Set(['ERR_INVALID_ARG_TYPE', 'ERR_OUT_OF_RANGE']);

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (v === null || v === undefined || typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'function') return 'a function';
  const name = (v as object).constructor?.name;
  return name && name !== 'Object' ? `a ${name}` : 'an object';
}

function fail(Kind: typeof TypeError | typeof RangeError, name: string, accepted: string, got: unknown): never {
  const err = new Kind(`${name} must be ${accepted}, got ${show(got)}`) as Error & { code: string };
  err.code = Kind === RangeError ? 'ERR_OUT_OF_RANGE' : 'ERR_INVALID_ARG_TYPE';
  Error.captureStackTrace?.(err, fail);
  throw err;
}

/** A value of the wrong type. */
export function typeError(name: string, accepted: string, got: unknown): never {
  return fail(TypeError, name, accepted, got);
}

/** A value of the right type outside the accepted ones. */
export function rangeError(name: string, accepted: string, got: unknown): never {
  return fail(RangeError, name, accepted, got);
}

export function boolean(name: string, v: unknown): asserts v is boolean {
  if (typeof v !== 'boolean') typeError(name, 'a boolean', v);
}

export function string(name: string, v: unknown): asserts v is string {
  if (typeof v !== 'string') typeError(name, 'a string', v);
}

/** A finite number, optionally within [min, max] (or (min, max] with `minExclusive`). */
export function number(
  name: string,
  v: unknown,
  range: { min?: number; max?: number; minExclusive?: boolean } = {},
): asserts v is number {
  const { min, max, minExclusive } = range;
  const bounds =
    min !== undefined && max !== undefined
      ? ` in ${minExclusive ? '(' : '['}${min}, ${max}]`
      : min !== undefined
        ? ` ${minExclusive ? '>' : '>='} ${min}`
        : max !== undefined
          ? ` <= ${max}`
          : '';
  if (typeof v !== 'number') typeError(name, `a number${bounds}`, v);
  if (
    !Number.isFinite(v) ||
    (min !== undefined && (minExclusive ? v <= min : v < min)) ||
    (max !== undefined && v > max)
  ) {
    rangeError(name, `a finite number${bounds}`, v);
  }
}

/** An integer (a safe one) within [min, max]. */
export function integer(name: string, v: unknown, range: { min?: number; max?: number } = {}): asserts v is number {
  const { min, max } = range;
  const accepted =
    min === 1 && max === undefined
      ? 'a positive integer'
      : min === 0 && max === undefined
        ? 'a non-negative integer'
        : `an integer${min !== undefined && max !== undefined ? ` in [${min}, ${max}]` : min !== undefined ? ` >= ${min}` : max !== undefined ? ` <= ${max}` : ''}`;
  if (typeof v !== 'number') typeError(name, accepted, v);
  if (!Number.isSafeInteger(v) || (min !== undefined && v < min) || (max !== undefined && v > max))
    rangeError(name, accepted, v);
}

/** One of a fixed list of values. */
export function oneOf<T extends string | number>(name: string, v: unknown, accepted: readonly T[]): asserts v is T {
  if (!accepted.includes(v as T)) {
    const list = accepted.map((a) => (typeof a === 'string' ? `'${a}'` : String(a)));
    const text = list.length > 1 ? `${list.slice(0, -1).join(', ')} or ${list[list.length - 1]}` : list[0];
    const sameType = accepted.length > 0 && typeof v === typeof accepted[0];
    (sameType ? rangeError : typeError)(name, `one of ${text}`, v);
  }
}

/** An instance of `Class`. */
export function instance<T>(
  name: string,
  v: unknown,
  Class: abstract new (...args: never[]) => T,
  what = `a ${Class.name}`,
): asserts v is T {
  if (!(v instanceof Class)) typeError(name, what, v);
}

/** A plain options object, or undefined. */
export function options(name: string, v: unknown): asserts v is object | undefined {
  if (v !== undefined && (v === null || typeof v !== 'object' || Array.isArray(v)))
    typeError(name, 'an options object', v);
}
