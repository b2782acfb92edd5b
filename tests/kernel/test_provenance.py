from nfvlab.kernel.provenance import kernel_provenance, parse_release


def test_recipe_release_is_parsed() -> None:
    assert parse_release("6.1.192-nfvlab-iron-229ae841") == {"recipe": "iron", "recipe_hash8": "229ae841"}
    assert parse_release("6.1.192-nfvlab-my-recipe-0123abcd")["recipe"] == "my-recipe"


def test_stock_kernel_has_no_recipe() -> None:
    p = kernel_provenance("6.18.44-fc-v857")
    assert p == {"release": "6.18.44-fc-v857", "recipe": None, "recipe_hash8": None, "recipe_hash": None}


def test_running_kernel() -> None:
    import platform

    assert kernel_provenance()["release"] == platform.release()
