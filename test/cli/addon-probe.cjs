// Preloaded (node -r) by the CLI tests and scripts/pack-test.sh: says on stderr, at exit, whether
// the native addon was loaded, so "--help never loads LibTorch" is checked, not assumed.
process.on('exit', () => {
  const loaded = Object.keys(require.cache).filter((k) => k.endsWith('.node') || /[\\/]native\.js$/.test(k));
  if (loaded.length) process.stderr.write(`ADDON LOADED: ${loaded.join(', ')}\n`);
});
