// The one place that loads the native addon. Everything else imports `binding`.
import * as path from 'node:path';

/** Package root: lib/ and dist/ both sit one level below it. */
export const packageRoot = path.resolve(__dirname, '..');

function load(): any {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const nodeGypBuild = require('node-gyp-build');
  try {
    return nodeGypBuild(packageRoot);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(
      `torchline: cannot load the native addon (${reason}).\n` +
        'Build it with `npm run setup` (installs LibTorch on Debian/Ubuntu and compiles), or see README "LibTorch".',
    );
  }
}

export const binding = load();
