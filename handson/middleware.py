def explain_wrong_method(get_response):
    """Give Django's empty 405 answers a sentence a person can act on.

    A view answers 405 when it has no method for the request (a GET of a button's
    address, say); Django sends that with an empty body.
    """

    def middleware(request):
        response = get_response(request)
        if response.status_code == 405 and not response.content:
            allowed = response.get("Allow", "")
            response.content = (f"{request.method} is not accepted at {request.path}: it takes {allowed}. "
                                "The buttons on /handson send POST.\n").encode()
            response["Content-Type"] = "text/plain; charset=utf-8"
        return response

    return middleware
