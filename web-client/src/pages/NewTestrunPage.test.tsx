import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import { MemoryRouter } from 'react-router';
import { describe, expect, it, vi } from 'vitest';
import type { NewTestrun } from '../store/TestrunStore';
import { NewTestrunPage } from './NewTestrunPage';

function setup(onSubmit: (input: NewTestrun) => Promise<Record<string, string> | null>) {
  render(
    <MemoryRouter>
      <NewTestrunPage onSubmit={onSubmit} />
    </MemoryRouter>,
  );
  const input = screen.getByTestId('file-input') as HTMLInputElement;
  const pick = (...files: File[]) => fireEvent.change(input, { target: { files } });
  return { pick };
}

describe('NewTestrunPage', () => {
  it('reads picked files as text and submits them with the form', async () => {
    const onSubmit = vi.fn(async () => null);
    const { pick } = setup(onSubmit);
    fireEvent.change(screen.getByTestId('username'), { target: { value: 'alice' } });
    pick(new File(['echo hello; exit 0'], 'ok.sh'), new File(['exit 3'], 'bad.sh'));
    await screen.findByText('bad.sh');
    fireEvent.change(screen.getByTestId('timeout'), { target: { value: '30' } });
    fireEvent.click(screen.getByTestId('submit'));
    await waitFor(() => expect(onSubmit).toHaveBeenCalled());
    expect(onSubmit).toHaveBeenCalledWith({
      username: 'alice',
      files: [
        { name: 'ok.sh', content: 'echo hello; exit 0' },
        { name: 'bad.sh', content: 'exit 3' },
      ],
      command: '',
      timeoutSeconds: 30,
    });
  });

  it('shows a server error beside the field it names', async () => {
    const { pick } = setup(async () => ({ username: 'must be 1 to 64 characters (got 65)' }));
    pick(new File(['exit 0'], 'ok.sh'));
    await screen.findByText('ok.sh');
    fireEvent.change(screen.getByTestId('username'), { target: { value: 'x'.repeat(65) } });
    fireEvent.click(screen.getByTestId('submit'));
    const helper = await screen.findByTestId('username-helper');
    await waitFor(() => expect(helper.textContent).toBe('must be 1 to 64 characters (got 65)'));
    expect(screen.getByTestId('username').getAttribute('aria-invalid')).toBe('true');
  });

  it('shows a file error beside that file and a tests error under the drop zone', async () => {
    const { pick } = setup(async (input): Promise<Record<string, string>> =>
      input.files.length === 0 ? { tests: 'at least one test is required' } : { 'tests[1].name': "contains '\\\\'" },
    );
    fireEvent.click(screen.getByTestId('submit'));
    expect((await screen.findByTestId('tests-error')).textContent).toBe('at least one test is required');
    pick(new File(['a'], 'a.sh'), new File(['b'], 'b\\c.sh'));
    await screen.findByText('b\\c.sh');
    fireEvent.click(screen.getByTestId('submit'));
    await screen.findByText("contains '\\\\'");
  });

  it('refuses a timeout that is not a whole number of seconds', async () => {
    const onSubmit = vi.fn(async () => null);
    setup(onSubmit);
    fireEvent.change(screen.getByTestId('timeout'), { target: { value: '1.5' } });
    fireEvent.click(screen.getByTestId('submit'));
    await screen.findByText(/whole number of seconds/);
    expect(onSubmit).not.toHaveBeenCalled();
  });
});
