// At most one call per period, always ending with the latest value, so that
// collaborators see where a cursor stopped without a message per keystroke.
// No `vscode` import: unit-tested in node.

export class Throttle<T> {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private pending: { value: T } | undefined;

  constructor(
    private readonly periodMs: number,
    private readonly send: (value: T) => void,
  ) {}

  push(value: T): void {
    if (this.timer !== undefined) {
      this.pending = { value };
      return;
    }
    this.send(value);
    this.arm();
  }

  private arm(): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const pending = this.pending;
      this.pending = undefined;
      if (pending) {
        this.send(pending.value);
        this.arm();
      }
    }, this.periodMs);
  }

  dispose(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
    }
    this.timer = undefined;
    this.pending = undefined;
  }
}
