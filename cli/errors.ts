import { namedError } from "../lib/errors.ts";

/** An error the CLI reports as-is (no stack), with its exit code. */
export class CliError extends namedError("CliError") {
  constructor(message: string, readonly exitCode = 1, options?: ErrorOptions) {
    super(message, options);
  }
}
