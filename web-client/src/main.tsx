import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { BrowserRouter } from 'react-router';
import { App } from './App';
import { createTokenStore } from './auth';
import { createAppTransport } from './transport';

const tokens = createTokenStore();
const transport = createAppTransport(tokens);

const root = document.getElementById('root');
if (root === null) throw new Error('index.html lacks #root');
createRoot(root).render(
  <StrictMode>
    <BrowserRouter>
      <App transport={transport} tokens={tokens} />
    </BrowserRouter>
  </StrictMode>,
);
