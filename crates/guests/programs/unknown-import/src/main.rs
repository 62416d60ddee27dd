//! An HTTP handler that imports an interface wok does not provide
//! (`example:unknown/oracle`): deploying it must be refused, naming it.
use wstd::http::{Body, Request, Response};

wit_bindgen::generate!({
    inline: r"
        package example:unknown;
        interface oracle {
            ask: func(question: string) -> string;
        }
        world guest {
            import oracle;
        }
    ",
});

#[wstd::http_server]
async fn main(_request: Request<Body>) -> wstd::http::Result<Response<Body>> {
    let answer = example::unknown::oracle::ask("anything?");
    Ok(Response::new(answer.into()))
}
