/**
 * The tests' libcni: lab/runtime.ts with ohno's faces taken from dist/ and the
 * reference plugins from /usr/lib/cni, and the result cache libcni keeps.
 * @module
 */

import type { Netns } from "../../netns/netns.ts";
import { type Attachment, CniRuntime, type ConfList } from "../../lab/runtime.ts";
import { OHNO, REF_CNI_DIR, REPO } from "./ohno.ts";

export type { Attachment, ConfList };

export class ConfListRunner {
  /** libcni's result cache for the attachment. */
  cached: Record<string, unknown> | undefined;
  readonly #rt: CniRuntime;

  constructor(readonly list: ConfList, host: Netns, env: Record<string, string> = {}) {
    this.#rt = new CniRuntime({
      path: [`${REPO}/dist`, REF_CNI_DIR],
      host,
      env: { OHNO_LOG_FILE: `${REPO}/tests/.out/cni.log`, ...env },
    });
  }

  async add(a: Attachment): Promise<Record<string, unknown>> {
    this.cached = await this.#rt.add(this.list, a);
    return this.cached;
  }

  /** CHECK of every plugin (or only those whose type `only` accepts). */
  check(a: Attachment, only: (type: string) => boolean = () => true): Promise<void> {
    return this.#rt.check(this.list, a, this.cached, only);
  }

  async del(a: Attachment): Promise<void> {
    await this.#rt.del(this.list, a, this.cached);
    this.cached = undefined;
  }
}

export { OHNO };
