// mulberry32: a small, fast, seeded PRNG, uniform in [0, 1). Plain CommonJS so that worker scripts run by
// node itself (test/distributed/*_worker.js) draw from the same generator as the tests (support/seed.ts).
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

module.exports = { mulberry32 };
