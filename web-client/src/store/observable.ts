// A minimal observable value, shaped for React's useSyncExternalStore.

/** Something a component can subscribe to and read synchronously. */
export interface Readable<S> {
  getState(): S;
  subscribe(listener: () => void): () => void;
}

/** Holds an immutable state object; every change replaces it and notifies. */
export class Observable<S extends object> implements Readable<S> {
  private readonly listeners = new Set<() => void>();

  constructor(protected state: S) {}

  readonly getState = (): S => this.state;

  readonly subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  protected setState(patch: Partial<S>): void {
    this.state = { ...this.state, ...patch };
    this.emit();
  }

  protected emit(): void {
    for (const l of [...this.listeners]) l();
  }
}
