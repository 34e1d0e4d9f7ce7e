// Where the package's own files are, without loading anything native.
import * as path from 'node:path';

/** Package root: lib/ and dist/ both sit one level below it. */
export const packageRoot = path.resolve(__dirname, '..');
