// The addon's zero-copy helpers (native/checkpoint/): storages are read from
// the file straight into tensor memory, and written from it, with no
// intermediate JS copy. Views share their storage, as in PyTorch.
import { binding } from '../native';
import { Tensor, DType } from '../tensor';

/** A fresh uninitialised 1-D tensor and a writable view of its bytes. */
export function allocStorage(numel: number, dtype: DType): { handle: unknown; bytes: Uint8Array } {
  const [handle, ab] = binding.checkpointStorage(numel, dtype);
  return { handle, bytes: new Uint8Array(ab) };
}

/** A tensor viewing `storage` (as_strided: shares its memory). */
export function viewOf(storage: unknown, size: readonly number[], stride: readonly number[], offset: number): Tensor {
  return new Tensor(binding.checkpointView(storage, [...size], [...stride], offset));
}

/** A tensor's elements, row-major: its own memory when it is contiguous on the CPU. */
export function bytesOf(t: Tensor): Uint8Array {
  return new Uint8Array(binding.checkpointBytes(t.handle));
}
