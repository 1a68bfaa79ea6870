//! libnftables, the library `nft` itself is built on, loaded at run time (`dlopen`): one
//! context kept for the watcher's life, so a batch costs a library call rather than starting
//! `nft` and its set-up each time (issue 14: nftables line → ban p99 under 10 ms). The text is
//! exactly what `nft -f -` would read. Where the library is absent, callers run `nft`.
use std::ffi::{CStr, CString, c_char, c_int, c_void};

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxBuffer = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxGetBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

pub struct Session {
    lib: *mut c_void,
    ctx: *mut c_void,
    free: CtxFree,
    get_output: CtxGetBuffer,
    get_error: CtxGetBuffer,
    run: RunCmd,
}

// SAFETY: the context is only ever used through `&mut self` (one thread at a time), which is
// all libnftables asks of a context.
unsafe impl Send for Session {}

fn sym<T: Copy>(lib: *mut c_void, name: &CStr) -> Option<T> {
    // SAFETY: `lib` is a live handle; the symbol's type is the documented libnftables one.
    let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    Some(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
}

impl Session {
    /// None when libnftables.so.1 cannot be loaded or set up.
    pub fn open() -> Option<Session> {
        // SAFETY: dlopen with a constant name; failure is a null handle.
        let lib = unsafe { libc::dlopen(c"libnftables.so.1".as_ptr(), libc::RTLD_NOW) };
        if lib.is_null() {
            return None;
        }
        let loaded = (|| {
            let new: CtxNew = sym(lib, c"nft_ctx_new")?;
            let free: CtxFree = sym(lib, c"nft_ctx_free")?;
            let buf_out: CtxBuffer = sym(lib, c"nft_ctx_buffer_output")?;
            let buf_err: CtxBuffer = sym(lib, c"nft_ctx_buffer_error")?;
            let get_output: CtxGetBuffer = sym(lib, c"nft_ctx_get_output_buffer")?;
            let get_error: CtxGetBuffer = sym(lib, c"nft_ctx_get_error_buffer")?;
            let run: RunCmd = sym(lib, c"nft_run_cmd_from_buffer")?;
            // SAFETY: documented calls on a fresh context (0 = NFT_CTX_DEFAULT).
            let ctx = unsafe { new(0) };
            if ctx.is_null() {
                return None;
            }
            // Output and errors into buffers, not the watcher's stdout/stderr.
            unsafe {
                buf_out(ctx);
                buf_err(ctx);
            }
            Some(Session {
                lib,
                ctx,
                free,
                get_output,
                get_error,
                run,
            })
        })();
        if loaded.is_none() {
            unsafe { libc::dlclose(lib) };
        }
        loaded
    }

    /// Run `text` as `nft -f -` would. Ok(stdout) or Err(the error text).
    pub fn run(&mut self, text: &str) -> Result<String, String> {
        let Ok(c) = CString::new(text) else {
            return Err("a NUL byte in the nft batch".into());
        };
        // SAFETY: a live context and a NUL-terminated buffer; the returned buffers are owned
        // by the context and copied before the next call.
        let rc = unsafe { (self.run)(self.ctx, c.as_ptr()) };
        let take = |get: CtxGetBuffer| {
            let p = unsafe { get(self.ctx) };
            if p.is_null() {
                String::new()
            } else {
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        let out = take(self.get_output);
        let err = take(self.get_error);
        if rc == 0 { Ok(out) } else { Err(err) }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: freed once, then the library is released.
        unsafe {
            (self.free)(self.ctx);
            libc::dlclose(self.lib);
        }
    }
}
