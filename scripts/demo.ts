// deno-lint-ignore-file no-console -- the demo narrates on stdout
/** `deno task demo`: the README's main job (filled in as the parts land). */
console.log("the demo is being built");
