/**
 * A contract suite: one `Deno.test` whose steps are the contract's cases, each run on a
 * fresh subject from `make`. A fixture the cases share (a test etcd) is stopped by
 * `teardown` when the last case is done, also when one failed; stopping it is not a
 * test and is not counted as one. When the suite cannot run here, every case is
 * reported as skipped with the reason.
 * @module
 */

export interface ContractCase<T> {
  title: string;
  fn: (subject: T) => Promise<void>;
}

export interface ContractSuiteOptions {
  /** Skip every case (e.g. etcd-server is not installed), with the reason in the names. */
  skip?: string | undefined;
  /** Stops what the cases shared; runs once after the last case. */
  teardown?: () => Promise<void>;
}

export function contractSuite<T extends { close(): Promise<void> }>(
  name: string,
  make: () => Promise<T>,
  cases: ContractCase<T>[],
  opts: ContractSuiteOptions = {},
): void {
  const skip = opts.skip ? ` [SKIP: ${opts.skip}]` : "";
  Deno.test({
    name: `${name}${skip}`,
    // Clients such as etcd's keep sockets and timers alive between cases by design.
    sanitizeOps: false,
    sanitizeResources: false,
    async fn(t) {
      try {
        for (const c of cases) {
          await t.step({
            name: `${c.title}${skip}`,
            ignore: !!opts.skip,
            sanitizeOps: false,
            sanitizeResources: false,
            async fn() {
              const subject = await make();
              try {
                await c.fn(subject);
              } finally {
                await subject.close();
              }
            },
          });
        }
      } finally {
        await opts.teardown?.();
      }
    },
  });
}
