import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { resnet18, Tensor, load, manualSeed, save } from '../../lib';
import { readTensorDir, writeTensorDir } from '../support/npy';
import { PYTHON, tempDir } from '../support/peer';

const SUPPORT = path.join(__dirname, '../support');

function maxAbsDiff(a: Tensor, b: Tensor): number {
  const x = a.toTypedArray() as Float32Array;
  const y = b.toTypedArray() as Float32Array;
  expect(x.length).toBe(y.length);
  return x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i])), 0);
}

describe('checkpoints between torchline models and torchvision', () => {
  it("torch.save(resnet18.state_dict()) loads into torchline and gives torchvision's outputs", async () => {
    const dir = tempDir('interop-in');
    execFileSync(PYTHON, [
      '-c',
      `
import sys, torch, torchvision
sys.path.insert(0, ${JSON.stringify(SUPPORT)})
from tensor_dir import write_dir
torch.manual_seed(0)
m = torchvision.models.resnet18(num_classes=10)
with torch.no_grad():
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2); mod.running_var.uniform_(0.5, 1.5)
m.eval()
x = torch.randn(2, 3, 64, 64)
torch.save(m.state_dict(), sys.argv[1] + '/resnet18.pth')
with torch.no_grad():
    write_dir(sys.argv[1] + '/io', {'x': x, 'y': m(x)})
`,
      dir,
    ]);
    const model = resnet18({ numClasses: 10 });
    expect(model.loadStateDict(load(path.join(dir, 'resnet18.pth')))).toEqual({ missingKeys: [], unexpectedKeys: [] });
    const io = readTensorDir(path.join(dir, 'io'));
    const y = await model.eval().forward(io.get('x')!);
    expect(maxAbsDiff(y, io.get('y')!)).toBeLessThan(1e-4);
  });

  it("a torchline checkpoint loads into torchvision (strict) and reproduces torchline's outputs", async () => {
    const dir = tempDir('interop-out');
    manualSeed(3);
    const model = resnet18({ numClasses: 7 }).eval();
    const x = Tensor.randn([2, 3, 64, 64]);
    const y = await model.forward(x);
    save(path.join(dir, 'ours.pth'), model.stateDict());
    writeTensorDir(
      path.join(dir, 'io'),
      new Map([
        ['x', x],
        ['y', y],
      ]),
    );
    const out = execFileSync(
      PYTHON,
      [
        '-c',
        `
import sys, torch, torchvision
sys.path.insert(0, ${JSON.stringify(SUPPORT)})
from tensor_dir import read_dir
m = torchvision.models.resnet18(num_classes=7)
m.load_state_dict(torch.load(sys.argv[1] + '/ours.pth', weights_only=True), strict=True)
m.eval()
io = read_dir(sys.argv[1] + '/io')
with torch.no_grad():
    print((m(io['x']) - io['y']).abs().max().item())
`,
        dir,
      ],
      { encoding: 'utf8' },
    );
    expect(Number(out.trim())).toBeLessThan(1e-4);
  });
});
